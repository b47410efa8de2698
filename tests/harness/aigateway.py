"""The chat-ai scenario (AIGatewayRoute driver) on a cluster, and a stand-in for the AI Gateway.

No Envoy AI Gateway controller runs in the tests. What it does to an AIGatewayRoute that the
operator relies on is its verdict in ``status.conditions``; :class:`FakeAIGatewayController`
writes it as Envoy AI Gateway v1.1 does: through the status subresource, one condition
``Accepted`` (reason ``ReconciliationSucceeded``), never stamped with an ``observedGeneration``.

Everything else is read from docs/ai-gateway.md (what users copy): the ModelRoute (the contract's
canonical chat-ai example), and per vendor the Envoy Gateway ``Backend``, ``BackendTLSPolicy``,
``AIServiceBackend`` and ``BackendSecurityPolicy``, with the namespace adapted and the probe
endpoints pointed at three fake backends on loopback: ``openai`` (OpenAI dialect, requires its
key), ``claude`` (Anthropic dialect, requires its key as ``x-api-key`` with an
``anthropic-version``; serves the dated id the alias ``claude-sonnet-4-5`` resolves to) and
``inhouse`` (OpenAI dialect, serves ``llama-3.1-70b-instruct``, no key). The keys are in the
Secrets ``openai-key`` and ``anthropic-key`` that the gateway's BackendSecurityPolicies and the
operator's probes share. :class:`AIGatewayRouteWatch` watches the AIGatewayRoute and records
every distinct priority order with the time it was first seen.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml
from kubernetes import client, watch
from kubernetes.dynamic import DynamicClient

from tests.fakes.openai_backend import FakeBackendThread
from tests.harness.apiserver import REPO_ROOT, Cluster
from tests.harness.bounds import within
from tests.harness.kube import GROUP, PLURAL, VERSION, wait_for
from tests.harness.scenario import Scenario

AI_GATEWAY_DOC = REPO_ROOT / "docs" / "ai-gateway.md"
CONTRACT = REPO_ROOT.parent / "shared" / "design" / "modelroute-api.md"
ROUTE_NAME = "chat-ai"
DOC_NAMESPACE = "ai"
AIGATEWAYROUTE = ("aigateway.envoyproxy.io", "v1beta1", "aigatewayroutes")
# Kinds of docs/ai-gateway.md the scenario creates besides the ModelRoute.
TARGET_KINDS = ("Backend", "BackendTLSPolicy", "AIServiceBackend", "BackendSecurityPolicy")

OPENAI_KEY = "sk-test-openai-7Qf3Zr9Lm2Xc"
ANTHROPIC_KEY = "sk-ant-test-anthropic-4Vb8Nq1Tw6Yh"
WRONG_ANTHROPIC_KEY = "sk-ant-test-wrong-2Kd5Jp0Gs3Ue"
KEYS = {"openai-key": OPENAI_KEY, "anthropic-key": ANTHROPIC_KEY}
CLAUDE_ID = "claude-sonnet-4-5-20250929"  # what the alias claude-sonnet-4-5 resolves to
LLAMA = "llama-3.1-70b-instruct"

# The Envoy AI Gateway v1.1 controller's one condition (never stamped with a generation).
ACCEPTED_REASON = "ReconciliationSucceeded"
ACCEPTED_MESSAGE = "AIGatewayRoute reconciled successfully"

Priorities = dict[str, int]  # backend name -> priority in the AIGatewayRoute


def doc_manifests() -> list[dict[str, Any]]:
    """Every Kubernetes object in the top-level yaml code blocks of docs/ai-gateway.md."""
    found: list[dict[str, Any]] = []
    text = AI_GATEWAY_DOC.read_text()
    for block in re.findall(r"^```ya?ml\s*$(.*?)^```\s*$", text, re.M | re.S):
        found += [d for d in yaml.safe_load_all(block) if isinstance(d, dict) and "kind" in d]
    return found


def contract_chat_ai() -> dict[str, Any] | None:
    """The chat-ai ModelRoute of the contract's canonical L7 examples (None: no contract here)."""
    if not CONTRACT.exists():
        return None
    section = re.search(
        r"^## Canonical L7 examples.*?$(.*?)(?=^## |\Z)", CONTRACT.read_text(), re.M | re.S
    )
    assert section is not None, "the contract has no '## Canonical L7 examples' section"
    block = re.search(r"^```ya?ml\s*$(.*?)^```\s*$", section.group(1), re.M | re.S)
    assert block is not None
    docs = [d for d in yaml.safe_load_all(block.group(1)) if d]
    return next(d for d in docs if d["metadata"]["name"] == ROUTE_NAME)


def documented(kind: str) -> list[dict[str, Any]]:
    """The objects of ``kind`` in docs/ai-gateway.md, in document order."""
    return [copy.deepcopy(d) for d in doc_manifests() if d["kind"] == kind]


def chat_ai_route(
    namespace: str,
    endpoints: dict[str, str],
    *,
    probe: dict[str, Any] | None = None,
    failback: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The chat-ai ModelRoute of docs/ai-gateway.md in ``namespace``, each backend probing
    ``endpoints[backend]``, with ``probe`` and ``failback`` added."""
    (route,) = documented("ModelRoute")
    route["metadata"]["namespace"] = namespace
    for backend in route["spec"]["backends"]:
        backend["endpoint"] = endpoints[backend["name"]]
    if probe:
        route["spec"]["probe"] = {**route["spec"].get("probe", {}), **probe}
    if failback:
        route["spec"]["failback"] = {**route["spec"].get("failback", {}), **failback}
    return route


def ai_gateway_targets(namespace: str) -> list[dict[str, Any]]:
    """The Backends, BackendTLSPolicies, AIServiceBackends and BackendSecurityPolicies of
    docs/ai-gateway.md in ``namespace`` (the in-house hostname names it too)."""
    found = []
    for doc in doc_manifests():
        if doc["kind"] not in TARGET_KINDS:
            continue
        doc = copy.deepcopy(doc)
        doc["metadata"]["namespace"] = namespace
        for endpoint in doc["spec"].get("endpoints") or []:
            fqdn = endpoint.get("fqdn") or {}
            if fqdn.get("hostname", "").endswith(f".{DOC_NAMESPACE}.svc.cluster.local"):
                service = fqdn["hostname"].split(".")[0]
                fqdn["hostname"] = f"{service}.{namespace}.svc.cluster.local"
        found.append(doc)
    return found


def create_ai_gateway_targets(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    """Create them through discovery (their apiVersions must be served, the upstream schemas
    must accept them); returns them as stored."""
    dynamic = DynamicClient(cluster.api_client())
    stored = []
    for body in ai_gateway_targets(namespace):
        resource = dynamic.resources.get(api_version=body["apiVersion"], kind=body["kind"])
        stored.append(resource.create(body=body, namespace=namespace).to_dict())
    return stored


def create_key_secrets(core: client.CoreV1Api, namespace: str) -> None:
    """openai-key and anthropic-key, each with the key ``apiKey`` (what the AI Gateway reads)."""
    for name, key in KEYS.items():
        core.create_namespaced_secret(
            namespace,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name=name),
                data={"apiKey": base64.b64encode(key.encode()).decode()},
            ),
        )


def set_key(core: client.CoreV1Api, namespace: str, secret: str, key: str) -> None:
    """Rotate ``secret``'s ``apiKey`` to ``key``."""
    data = {"apiKey": base64.b64encode(key.encode()).decode()}
    core.patch_namespaced_secret(secret, namespace, {"data": data})


# --- the AI Gateway controller, played --------------------------------------------------------


class FakeAIGatewayController:
    """Plays the Envoy AI Gateway v1.1 controller for one AIGatewayRoute: once it has seen the
    route, ``status.conditions`` is one ``Accepted`` condition (unstamped, as v1.1 writes it),
    written by its own thread as the test's identity; nothing is written when it is already so.
    """

    def __init__(self, cluster: Cluster, namespace: str, name: str = ROUTE_NAME) -> None:
        self._custom = client.CustomObjectsApi(cluster.api_client())
        self.namespace, self.name = namespace, name
        self.enabled = True
        self._poke = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-ai-gateway", daemon=True)
        self.writes = 0
        self.errors: list[str] = []

    def start(self) -> FakeAIGatewayController:
        """Start answering."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering."""
        self._stop.set()
        self._poke.set()
        self._thread.join(10)

    def answer(self) -> None:
        """Start answering now (a controller that was silent comes up)."""
        self.enabled = True
        self._poke.set()

    def on_route(self, body: dict[str, Any]) -> None:
        """A version of the AIGatewayRoute was seen: answer in the controller's own thread."""
        self._poke.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poke.wait()
            self._poke.clear()
            if self._stop.is_set() or not self.enabled:
                continue
            try:
                self._answer()
            except client.ApiException as exc:
                if exc.status != 404:
                    self.errors.append(f"{exc.status} {exc.reason}")

    def _answer(self) -> None:
        group, version, plural = AIGATEWAYROUTE
        try:
            latest = self._custom.get_namespaced_custom_object(
                group, version, self.namespace, plural, self.name
            )
        except client.ApiException as exc:
            if exc.status == 404:
                return
            raise
        conditions = (latest.get("status") or {}).get("conditions") or []
        wanted = ("Accepted", "True", ACCEPTED_REASON, ACCEPTED_MESSAGE)
        if [
            tuple(c.get(k) for k in ("type", "status", "reason", "message")) for c in conditions
        ] == [wanted]:
            return
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        condition = dict(zip(("type", "status", "reason", "message"), wanted, strict=True))
        body = {"status": {"conditions": [{**condition, "lastTransitionTime": now}]}}
        self._custom.patch_namespaced_custom_object_status(
            group, version, self.namespace, plural, self.name, body
        )
        self.writes += 1


# --- watching the AIGatewayRoute --------------------------------------------------------------


@dataclass
class Seen:
    """One priority order of the AIGatewayRoute and when it was first seen (monotonic)."""

    at: float
    priorities: Priorities
    generation: int

    @property
    def first(self) -> str | None:
        """The backend at priority 0 (None: none, or several)."""
        firsts = [name for name, priority in self.priorities.items() if priority == 0]
        return firsts[0] if len(firsts) == 1 else None


@dataclass
class AIGatewayRouteWatch:
    """A watch of one AIGatewayRoute in a thread: records each new priority order (by backend
    name) with the time it was first seen, and hands every version to ``listeners``."""

    cluster: Cluster
    namespace: str
    names: dict[str, str]  # AIServiceBackend name -> backend name
    name: str = ROUTE_NAME
    listeners: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    history: list[Seen] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="aigatewayroute-watch", daemon=True)

    def start(self) -> AIGatewayRouteWatch:
        """Start watching."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (returns within about a second)."""
        self._stop.set()
        self._thread.join(10)

    def priorities_of(self, body: dict[str, Any]) -> Priorities | None:
        """The priority ``body``'s single rule gives each backend, by backend name."""
        rules = (body.get("spec") or {}).get("rules") or []
        if len(rules) != 1:
            return None
        refs = rules[0].get("backendRefs") or []
        return {self.names.get(r["name"], r["name"]): r.get("priority", 0) for r in refs}

    def wait_for(self, priorities: Priorities, timeout: float, after: int = 0) -> Seen:
        """The first record from index ``after`` on with exactly ``priorities``."""
        timeout = within(timeout)  # a hang guard: CI slack unless MODELROUTE_FAULT_STRICT=1
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for seen in self.history[after:]:
                    if seen.priorities == priorities:
                        return seen
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out after {timeout:.1f}s waiting for AIGatewayRoute priorities "
                        f"{priorities}; seen since: {[s.priorities for s in self.history[after:]]}"
                    )
                self._changed.wait(min(left, 0.5))

    def _record(self, body: dict[str, Any]) -> None:
        priorities = self.priorities_of(body)
        with self._changed:
            last = self.history[-1].priorities if self.history else None
            if priorities is not None and priorities != last:
                generation = body["metadata"].get("generation", 0)
                self.history.append(Seen(time.monotonic(), priorities, generation))
                self._changed.notify_all()
        for listener in self.listeners:
            listener(body)

    def _run(self) -> None:
        group, version, plural = AIGATEWAYROUTE
        custom = client.CustomObjectsApi(self.cluster.api_client())
        selector = f"metadata.name={self.name}"
        resource_version: str | None = None
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    listed = custom.list_namespaced_custom_object(
                        group, version, self.namespace, plural, field_selector=selector
                    )
                    for item in listed["items"]:
                        self._record(item)
                    resource_version = listed["metadata"]["resourceVersion"]
                stream = watch.Watch().stream(
                    custom.list_namespaced_custom_object,
                    group,
                    version,
                    self.namespace,
                    plural,
                    field_selector=selector,
                    resource_version=resource_version,
                    timeout_seconds=1,
                    allow_watch_bookmarks=True,
                )
                for event in stream:
                    obj = event["object"]
                    resource_version = obj["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._record(obj)
                    if self._stop.is_set():
                        break
            except client.ApiException as exc:
                if exc.status == 410:  # too old: list again
                    resource_version = None
                    continue
                self.errors.append(f"{exc.status} {exc.reason}")
                time.sleep(0.2)
            except Exception as exc:  # a dropped connection: watch again from where it was
                if "Expired" in str(exc) or "410" in str(exc):
                    resource_version = None
                else:
                    self.errors.append(repr(exc))
                time.sleep(0.2)


# --- the scenario -----------------------------------------------------------------------------


@dataclass
class AIGatewayScenario(Scenario):
    """The chat-ai scenario. ``vendor`` is the OpenAI fake and ``inhouse`` the llama one (the
    :class:`Scenario` handles); ``claude`` is the Anthropic fake."""

    claude: FakeBackendThread = field(default=None)  # type: ignore[assignment]
    gateway: FakeAIGatewayController = field(default=None)  # type: ignore[assignment]
    watch: AIGatewayRouteWatch = field(default=None)  # type: ignore[assignment]
    targets: list[dict[str, Any]] = field(default_factory=list)

    @property
    def openai(self) -> FakeBackendThread:
        """The OpenAI fake."""
        return self.vendor

    def ai_gateway_route(self) -> dict[str, Any] | None:
        """The AIGatewayRoute as stored, or None."""
        group, version, plural = AIGATEWAYROUTE
        try:
            got: dict[str, Any] = self.custom.get_namespaced_custom_object(
                group, version, self.namespace, plural, ROUTE_NAME
            )
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return got

    def traffic(self) -> dict[str, int]:
        """status.traffic of the ModelRoute, by backend name."""
        entries = (self.get_route().get("status") or {}).get("traffic") or []
        return {t["backend"]: t["weight"] for t in entries}

    def condition_is(self, ctype: str, status: str, reason: str | None = None) -> bool:
        """The route's ``ctype`` condition has ``status`` (and ``reason``)."""
        cond = self.condition(ctype) or {}
        return cond.get("status") == status and reason in (None, cond.get("reason"))

    def active(self) -> str | None:
        """status.activeBackend."""
        return (self.get_route().get("status") or {}).get("activeBackend")

    def all_healthy(self) -> bool:
        """Every backend probed and healthy (status.backends)."""
        entries = (self.get_route().get("status") or {}).get("backends") or []
        names = {b["name"] for b in self.route["spec"]["backends"]}
        return {e["name"] for e in entries if e.get("healthy") is True} == names

    def wait_routed_and_accepted(self, first: Priorities, timeout: float = 30) -> None:
        """``first`` in the AIGatewayRoute, RoutingAccepted True, Ready True and every backend
        healthy (probed at least once)."""
        self.watch.wait_for(first, timeout)
        wait_for(lambda: self.condition_is("RoutingAccepted", "True"), timeout, "RoutingAccepted")
        wait_for(lambda: self.condition_is("Ready", "True"), timeout, "Ready=True")
        wait_for(self.all_healthy, timeout, "every backend healthy")


def backend_names(route: dict[str, Any]) -> dict[str, str]:
    """AIServiceBackend name -> backend name."""
    return {b["aiServiceBackendRef"]["name"]: b["name"] for b in route["spec"]["backends"]}


@contextlib.contextmanager
def ai_gateway_scenario(
    cluster: Cluster,
    namespace: str,
    *,
    probe: dict[str, Any] | None = None,
    failback: dict[str, Any] | None = None,
    create_route: bool = True,
    accept: bool = True,
) -> Iterator[AIGatewayScenario]:
    """Three fake vendors, the key Secrets, the AI Gateway objects of docs/ai-gateway.md, the
    played AI Gateway controller (``accept``: it answers from the start) and the AIGatewayRoute
    watch, and (optionally) chat-ai. Backends and threads stop afterwards; the route is deleted.
    """
    with ExitStack() as stack:
        openai = stack.enter_context(
            FakeBackendThread(("gpt-4o",), api_key=OPENAI_KEY, name="openai")
        )
        claude = stack.enter_context(
            FakeBackendThread(
                (CLAUDE_ID,), api_key=ANTHROPIC_KEY, name="anthropic", dialect="Anthropic"
            )
        )
        inhouse = stack.enter_context(FakeBackendThread((LLAMA,), name="llama"))
        create_key_secrets(client.CoreV1Api(cluster.api_client()), namespace)
        targets = create_ai_gateway_targets(cluster, namespace)
        endpoints = {"openai": openai.url, "claude": claude.url, "inhouse": inhouse.url}
        route = chat_ai_route(namespace, endpoints, probe=probe, failback=failback)
        gateway = FakeAIGatewayController(cluster, namespace)
        gateway.enabled = accept
        gateway.start()
        stack.callback(gateway.stop)
        observed = AIGatewayRouteWatch(cluster, namespace, backend_names(route))
        observed.listeners.append(gateway.on_route)
        sc = AIGatewayScenario(
            cluster, namespace, openai, inhouse, route, claude, gateway, observed, targets
        )
        observed.start()
        stack.callback(observed.stop)
        stack.callback(_delete_route, sc)
        if create_route:
            sc.create_route()
        yield sc


def _delete_route(sc: AIGatewayScenario) -> None:
    with contextlib.suppress(client.ApiException):
        sc.custom.delete_namespaced_custom_object(
            GROUP, VERSION, sc.namespace, PLURAL, sc.route["metadata"]["name"]
        )
