"""The chat-gw scenario (HTTPRoute driver) on a cluster, and a stand-in for the gateway controller.

No Gateway implementation runs in the tests or the demo. What a Gateway does to an HTTPRoute that
the operator relies on is its verdict in ``status.parents[]``; :class:`FakeGatewayController`
writes it as an implementation does: through the status subresource, one entry per parentRef it
judged, with its ``controllerName``, and conditions ``Accepted`` / ``ResolvedRefs`` stamped with
the ``observedGeneration`` they judged (so an answer is re-stamped after every spec change).

The ModelRoute, the Envoy Gateway ``Backend``, the ``BackendTLSPolicy`` and the ``InferencePool``
are read from docs/gateway.md (what users copy), with the namespace adapted and the probe
endpoints pointed at fake backends on loopback. :class:`HTTPRouteWatch` watches the HTTPRoute and
records every distinct split of its weights with the time it was first seen.
"""

from __future__ import annotations

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

from tests.fakes.openai_backend import FakeBackendThread
from tests.harness.apiserver import REPO_ROOT, Cluster
from tests.harness.bounds import within
from tests.harness.kube import GROUP, PLURAL, VERSION, wait_for
from tests.harness.scenario import VENDOR_KEY, Scenario, create_vendor_secret

GATEWAY_DOC = REPO_ROOT / "docs" / "gateway.md"
ROUTE_NAME = "chat-gw"
CONTROLLER_NAME = "example.com/gateway-controller"
HTTPROUTE = ("gateway.networking.k8s.io", "v1", "httproutes")
# Kinds of docs/gateway.md the scenario creates besides the ModelRoute: (group, version, plural).
TARGET_KINDS = {
    "Backend": ("gateway.envoyproxy.io", "v1alpha1", "backends"),
    "BackendTLSPolicy": ("gateway.networking.k8s.io", "v1", "backendtlspolicies"),
    "InferencePool": ("inference.networking.k8s.io", "v1", "inferencepools"),
}
Weights = dict[str, int]


def doc_manifests() -> list[dict[str, Any]]:
    """Every Kubernetes object in the yaml code blocks of docs/gateway.md."""
    found: list[dict[str, Any]] = []
    for block in re.findall(r"^```ya?ml\s*$(.*?)^```\s*$", GATEWAY_DOC.read_text(), re.M | re.S):
        found += [d for d in yaml.safe_load_all(block) if isinstance(d, dict) and "kind" in d]
    return found


def chat_gw_route(
    namespace: str,
    vendor_url: str,
    inhouse_url: str,
    *,
    probe: dict[str, Any] | None = None,
    failback: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The chat-gw example of docs/gateway.md in ``namespace``, probing the fakes, with ``probe``
    and ``failback`` fields overriding the example's."""
    (route,) = [d for d in doc_manifests() if d["kind"] == "ModelRoute"]
    route = copy.deepcopy(route)
    route["metadata"]["namespace"] = namespace
    vendor, inhouse = route["spec"]["backends"]
    vendor["endpoint"], inhouse["endpoint"] = vendor_url, inhouse_url
    if probe:
        route["spec"]["probe"] = {**route["spec"].get("probe", {}), **probe}
    if failback:
        route["spec"]["failback"] = {**route["spec"].get("failback", {}), **failback}
    return route


def gateway_targets(namespace: str) -> list[dict[str, Any]]:
    """The Backend, BackendTLSPolicy and InferencePool of docs/gateway.md, in ``namespace``."""
    found = []
    for doc in doc_manifests():
        if doc["kind"] in TARGET_KINDS:
            doc = copy.deepcopy(doc)
            doc["metadata"]["namespace"] = namespace
            found.append(doc)
    return found


def create_gateway_targets(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    """Create the backendRefs' targets (the upstream schemas must accept them); returns them
    as stored."""
    custom = client.CustomObjectsApi(cluster.api_client())
    stored = []
    for body in gateway_targets(namespace):
        group, version, plural = TARGET_KINDS[body["kind"]]
        stored.append(
            custom.create_namespaced_custom_object(group, version, namespace, plural, body)
        )
    return stored


# --- the gateway controller, played -----------------------------------------------------------


@dataclass(frozen=True)
class GatewayVerdict:
    """What the played gateway says of every parentRef: Accepted and ResolvedRefs."""

    accepted: bool = True
    reason: str = "Accepted"
    message: str = "Route is accepted"
    resolved_refs: bool = True

    @staticmethod
    def rejected(reason: str, message: str) -> GatewayVerdict:
        """Accepted False for ``reason`` (refs resolved)."""
        return GatewayVerdict(accepted=False, reason=reason, message=message)

    def conditions(
        self, generation: int, previous: list[dict[str, Any]], now: str
    ) -> list[dict[str, Any]]:
        """The conditions for ``generation``; a condition whose status did not change keeps its
        lastTransitionTime (metav1.Condition semantics)."""
        wanted = [
            ("Accepted", self.accepted, self.reason, self.message),
            (
                "ResolvedRefs",
                self.resolved_refs,
                "ResolvedRefs" if self.resolved_refs else "BackendNotFound",
                "All references resolved" if self.resolved_refs else "a backendRef is missing",
            ),
        ]
        before = {c.get("type"): c for c in previous}
        out = []
        for ctype, ok, reason, message in wanted:
            status = "True" if ok else "False"
            old = before.get(ctype) or {}
            since = old["lastTransitionTime"] if old.get("status") == status else now
            out.append(
                {
                    "type": ctype,
                    "status": status,
                    "reason": reason,
                    "message": message,
                    "observedGeneration": generation,
                    "lastTransitionTime": since,
                }
            )
        return out


def _same_conditions(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    def key(conds: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        fields = ("type", "status", "reason", "message", "observedGeneration")
        return sorted(tuple(c.get(f) for f in fields) for c in conds)

    return key(a) == key(b)


class FakeGatewayController:
    """Plays the Gateway controller for one HTTPRoute: answers every generation of its spec with
    the current verdict in ``status.parents[]`` (None: stays silent), as its own identity.

    Answers come from :meth:`on_route` (called for every version :class:`HTTPRouteWatch` sees)
    and from :meth:`set_verdict`, which writes at once and returns when the write is done.
    Entries of other controllers are kept; nothing is written when the answer is already there.
    """

    def __init__(self, cluster: Cluster, namespace: str, name: str = ROUTE_NAME) -> None:
        self._custom = client.CustomObjectsApi(cluster.api_client())
        self.namespace, self.name = namespace, name
        self._verdict: GatewayVerdict | None = None
        self._lock = threading.Lock()
        self._poke = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-gateway", daemon=True)
        self.writes = 0
        self.errors: list[str] = []

    def start(self) -> FakeGatewayController:
        """Start answering the versions :meth:`on_route` hands over."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering."""
        self._stop.set()
        self._poke.set()
        self._thread.join(10)

    @property
    def verdict(self) -> GatewayVerdict | None:
        """The verdict the controller gives now."""
        return self._verdict

    def set_verdict(self, verdict: GatewayVerdict | None) -> float | None:
        """Give ``verdict`` from now on; writes it for the current generation at once. Returns
        the monotonic time the status write completed (None when nothing was written)."""
        self._verdict = verdict
        return self._answer()

    def on_route(self, body: dict[str, Any]) -> None:
        """A version of the HTTPRoute was seen: answer its generation (in the controller's own
        thread, so the watch that calls this is never held up)."""
        self._poke.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poke.wait()
            self._poke.clear()
            if self._stop.is_set():
                return
            try:
                self._answer()
            except client.ApiException as exc:
                if exc.status != 404:
                    self.errors.append(f"{exc.status} {exc.reason}")

    def _read(self) -> dict[str, Any] | None:
        group, version, plural = HTTPROUTE
        try:
            got: dict[str, Any] = self._custom.get_namespaced_custom_object(
                group, version, self.namespace, plural, self.name
            )
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return got

    def _answer(self) -> float | None:
        with self._lock:
            verdict = self._verdict
            if verdict is None:
                return None
            # Judge the version stored now, not the one an event carried: it may be older.
            latest = self._read()
            if latest is None:
                return None
            generation = latest["metadata"]["generation"]
            parents = list((latest.get("status") or {}).get("parents") or [])
            ours = [p for p in parents if p.get("controllerName") == CONTROLLER_NAME]
            others = [p for p in parents if p.get("controllerName") != CONTROLLER_NAME]
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            entries = []
            for ref in latest["spec"].get("parentRefs") or []:
                previous = next((p for p in ours if p.get("parentRef") == ref), {})
                old = previous.get("conditions") or []
                entries.append(
                    {
                        "parentRef": ref,
                        "controllerName": CONTROLLER_NAME,
                        "conditions": verdict.conditions(generation, old, now),
                    }
                )
            unchanged = len(entries) == len(ours) and all(
                any(
                    p.get("parentRef") == e["parentRef"]
                    and _same_conditions(p.get("conditions") or [], e["conditions"])
                    for p in ours
                )
                for e in entries
            )
            if unchanged:
                return None
            group, version, plural = HTTPROUTE
            self._custom.patch_namespaced_custom_object_status(
                group,
                version,
                self.namespace,
                plural,
                self.name,
                {"status": {"parents": others + entries}},
            )
            self.writes += 1
            return time.monotonic()


# --- watching the HTTPRoute -------------------------------------------------------------------


@dataclass
class Seen:
    """One split of the HTTPRoute's weights and when it was first seen (monotonic seconds)."""

    at: float
    weights: Weights
    generation: int


@dataclass
class HTTPRouteWatch:
    """A watch of one HTTPRoute in a thread: records each new split of its weights (by backend
    name) with the time it was first seen, and hands every version to ``listeners``."""

    cluster: Cluster
    namespace: str
    names: dict[str, str]  # backendRef/serviceRef name -> backend name
    name: str = ROUTE_NAME
    listeners: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    history: list[Seen] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="httproute-watch", daemon=True)

    def start(self) -> HTTPRouteWatch:
        """Start watching."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (returns within about a second)."""
        self._stop.set()
        self._thread.join(10)

    def weights_of(self, body: dict[str, Any]) -> Weights | None:
        """The weights ``body``'s single rule gives each backend, by backend name."""
        rules = (body.get("spec") or {}).get("rules") or []
        if len(rules) != 1:
            return None
        refs = rules[0].get("backendRefs") or []
        return {self.names.get(r["name"], r["name"]): r.get("weight", 1) for r in refs}

    @property
    def current(self) -> Weights | None:
        """The latest split seen."""
        with self._changed:
            return dict(self.history[-1].weights) if self.history else None

    def wait_for(self, weights: Weights, timeout: float, after: int = 0) -> Seen:
        """The first record from index ``after`` on with exactly ``weights``."""
        timeout = within(timeout)  # a hang guard: CI slack unless MODELROUTE_FAULT_STRICT=1
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for seen in self.history[after:]:
                    if seen.weights == weights:
                        return seen
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out after {timeout:.1f}s waiting for HTTPRoute weights {weights};"
                        f" seen since: {[s.weights for s in self.history[after:]]}"
                    )
                self._changed.wait(min(left, 0.5))

    def _record(self, body: dict[str, Any]) -> None:
        weights = self.weights_of(body)
        with self._changed:
            last = self.history[-1].weights if self.history else None
            if weights is not None and weights != last:
                generation = body["metadata"].get("generation", 0)
                self.history.append(Seen(time.monotonic(), weights, generation))
                self._changed.notify_all()
        for listener in self.listeners:
            listener(body)

    def _run(self) -> None:
        group, version, plural = HTTPROUTE
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
class GatewayScenario(Scenario):
    """The chat-gw scenario: the Scenario handles, the played gateway and the HTTPRoute watch."""

    gateway: FakeGatewayController = field(default=None)  # type: ignore[assignment]
    watch: HTTPRouteWatch = field(default=None)  # type: ignore[assignment]

    def http_route(self) -> dict[str, Any] | None:
        """The HTTPRoute as stored, or None."""
        group, version, plural = HTTPROUTE
        try:
            got: dict[str, Any] = self.custom.get_namespaced_custom_object(
                group, version, self.namespace, plural, ROUTE_NAME
            )
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return got

    def weights(self) -> Weights | None:
        """The weights the stored HTTPRoute gives each backend, by backend name."""
        body = self.http_route()
        return self.watch.weights_of(body) if body is not None else None

    def traffic(self) -> Weights:
        """status.traffic of the ModelRoute, by backend name."""
        entries = (self.get_route().get("status") or {}).get("traffic") or []
        return {t["backend"]: t["weight"] for t in entries}

    def condition_is(self, ctype: str, status: str, reason: str | None = None) -> bool:
        """The route's ``ctype`` condition has ``status`` (and ``reason``)."""
        cond = self.condition(ctype) or {}
        return cond.get("status") == status and reason in (None, cond.get("reason"))

    def wait_routed_and_accepted(self, timeout: float = 30) -> None:
        """Vendor 100, RoutingAccepted True and Ready True."""
        self.watch.wait_for({"vendor": 100, "inhouse": 0}, timeout)
        wait_for(lambda: self.condition_is("RoutingAccepted", "True"), timeout, "RoutingAccepted")
        wait_for(lambda: self.condition_is("Ready", "True"), timeout, "Ready=True")


def backend_names(route: dict[str, Any]) -> dict[str, str]:
    """backendRef (or serviceRef) name -> backend name."""
    names = {}
    for backend in route["spec"]["backends"]:
        ref = backend.get("backendRef") or backend.get("serviceRef") or {}
        names[ref["name"]] = backend["name"]
    return names


@contextlib.contextmanager
def gateway_scenario(
    cluster: Cluster,
    namespace: str,
    *,
    probe: dict[str, Any] | None = None,
    failback: dict[str, Any] | None = None,
    create_route: bool = True,
    verdict: GatewayVerdict | None = GatewayVerdict(),  # frozen: safe to share
) -> Iterator[GatewayScenario]:
    """Fake backends (vendor needs the key), the key Secret, the Backend, BackendTLSPolicy and
    InferencePool, the played gateway (``verdict``; None: silent) watching the HTTPRoute, and
    (optionally) chat-gw. Backends and threads stop afterwards; the route is deleted."""
    with ExitStack() as stack:
        vendor = stack.enter_context(
            FakeBackendThread(("gpt-4o",), api_key=VENDOR_KEY, name="vendor")
        )
        inhouse = stack.enter_context(FakeBackendThread(("gpt-4o",), name="inhouse"))
        try:
            create_vendor_secret(client.CoreV1Api(cluster.api_client()), namespace)
        except client.ApiException as exc:
            if exc.status != 409:  # the Service scenario's, in the same namespace (the demo)
                raise
        create_gateway_targets(cluster, namespace)
        route = chat_gw_route(namespace, vendor.url, inhouse.url, probe=probe, failback=failback)
        gateway = FakeGatewayController(cluster, namespace).start()
        stack.callback(gateway.stop)
        gateway.set_verdict(verdict)
        observed = HTTPRouteWatch(cluster, namespace, backend_names(route))
        observed.listeners.append(gateway.on_route)
        sc = GatewayScenario(cluster, namespace, vendor, inhouse, route, gateway, observed)
        observed.start()
        stack.callback(observed.stop)
        stack.callback(_delete_route, sc)
        if create_route:
            sc.create_route()
        yield sc


def _delete_route(sc: GatewayScenario) -> None:
    with contextlib.suppress(client.ApiException):
        sc.custom.delete_namespaced_custom_object(
            GROUP, VERSION, sc.namespace, PLURAL, sc.route["metadata"]["name"]
        )
