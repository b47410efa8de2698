"""A real server nobody here wrote: LiteLLM's proxy as the preferred backend, a fake as fallback.

The proxy (from PyPI, ``make litellm-env``) runs offline on loopback with mock answers and a
master key (see :mod:`tests.harness.litellm`); it is started once for this module because it
takes seconds to tens of seconds to start.  Two routes probe it in OpenAI's dialect, one with
``Models`` (``GET /v1/models``) and one with ``Chat`` (a one-token ``POST
/v1/chat/completions``), both with the master key from a Secret; a third has another key, which
LiteLLM refuses, and stays on the fake.  Stopping the proxy must fail the first two over to the
fake; starting it again must fail them back.  The durations are printed (run with ``-s``) for
README.md's Tests section, never asserted.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from kubernetes import client

from tests.envtest.conftest import FAST_PROBE
from tests.fakes.openai_backend import FakeBackendThread
from tests.harness.apiserver import Cluster
from tests.harness.kube import GROUP, PLURAL, VERSION, wait_for
from tests.harness.litellm import (
    MASTER_KEY,
    LiteLLMMissing,
    LiteLLMProxy,
    litellm_executable,
    litellm_proxy,
    under_ci,
)
from tests.harness.operator import OperatorProcess

MODEL = "gpt-4o"
FALLBACK_MODEL = "llama-3.1-70b-instruct"
#: Target Services the stable Services mirror: the LiteLLM proxy's and the fallback's.
SELECTORS = {"litellm": {"app": "litellm-proxy"}, "fallback": {"app": "fallback-llm"}}
#: One route per probe type; each route's stable Service is ``<route>-llm``.
ROUTES = {"via-models": "Models", "via-chat": "Chat"}
#: A route whose Secret holds another key: LiteLLM refuses it, so it never routes there.
WRONG_KEY_ROUTE = "via-wrong-key"
WRONG_KEY = "sk-not-the-master-key-61f0"
STABILIZATION_SECONDS = 2
# A one-token chat through the proxy takes longer than a listing on a loaded machine.
PROBE = {**FAST_PROBE, "timeoutSeconds": 3}
# Generous waits: this proves behaviour against a real server, durations are only reported.
WAIT = 60.0

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiteLLMProxy]:
    """The LiteLLM proxy, started once for the module; fails under CI=true if not installed."""
    try:
        litellm_executable()
    except LiteLLMMissing as exc:
        if under_ci():
            pytest.fail(f"{exc}; under CI=true the LiteLLM test fails, never skips")
        pytest.skip(str(exc))
    with litellm_proxy(tmp_path_factory.mktemp("litellm"), [MODEL]) as (running, seconds):
        print(f"\nLiteLLM proxy started in {seconds:.1f}s")
        yield running


def route(
    namespace: str, name: str, probe_type: str, urls: tuple[str, str], secret: str = "litellm-key"
) -> Any:
    """A ModelRoute: LiteLLM first (key from ``secret``), the fake second (``urls``, in order)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "service": {"name": f"{name}-llm", "port": 80},
            "backends": [
                {
                    "name": "litellm",
                    "priority": 0,
                    "serviceRef": {"name": "litellm", "port": 4000},
                    "endpoint": urls[0],
                    "model": MODEL,
                    "authSecretRef": {"name": secret, "key": "apiKey"},
                },
                {
                    "name": "fallback",
                    "priority": 1,
                    "serviceRef": {"name": "fallback", "port": 8000},
                    "endpoint": urls[1],
                    "model": FALLBACK_MODEL,
                },
            ],
            "probe": {**PROBE, "type": probe_type},
            "failback": {"mode": "Automatic", "stabilizationSeconds": STABILIZATION_SECONDS},
        },
    }


def create_targets(core: client.CoreV1Api, namespace: str) -> None:
    """The target Services (selectors, no Pods needed); Secrets with the right and a wrong key."""
    for name, port in (("litellm", 4000), ("fallback", 8000)):
        core.create_namespaced_service(
            namespace,
            client.V1Service(
                metadata=client.V1ObjectMeta(name=name),
                spec=client.V1ServiceSpec(
                    selector=SELECTORS[name], ports=[client.V1ServicePort(port=port)]
                ),
            ),
        )
    for secret, key in (("litellm-key", MASTER_KEY), ("wrong-key", WRONG_KEY)):
        core.create_namespaced_secret(
            namespace,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name=secret),
                data={"apiKey": base64.b64encode(key.encode()).decode()},
            ),
        )


class Routes:
    """Reads of the routes and their stable Services."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.core = client.CoreV1Api(cluster.api_client())
        self.custom = client.CustomObjectsApi(cluster.api_client())
        self.namespace = namespace

    def routed_to(self, name: str) -> str | None:
        """Which target the stable Service of route ``name`` mirrors (None if none yet)."""
        try:
            svc = self.core.read_namespaced_service(f"{name}-llm", self.namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return next((t for t, sel in SELECTORS.items() if svc.spec.selector == sel), None)

    def all_routed_to(self, target: str) -> bool:
        """Whether every route's stable Service mirrors ``target``."""
        return all(self.routed_to(name) == target for name in ROUTES)

    def status(self, name: str) -> dict[str, Any]:
        """status of route ``name`` ({} before the first write)."""
        got = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        return dict(got.get("status") or {})

    def backend(self, name: str, backend: str) -> dict[str, Any]:
        """status.backends[backend] of route ``name`` ({} if absent)."""
        entries = self.status(name).get("backends", [])
        return next((dict(e) for e in entries if e["name"] == backend), {})

    def all_active(self, backend: str) -> bool:
        """Whether every route's status names ``backend`` as the active one."""
        return all(self.status(name).get("activeBackend") == backend for name in ROUTES)

    def reasons(self, name: str) -> list[str]:
        """Reasons of the Events on route ``name``."""
        items = self.core.list_namespaced_event(self.namespace).items
        return [e.reason for e in items if e.involved_object.name == name]


def seconds_until(predicate: Any, what: str, since: float) -> float:
    """Seconds from ``since`` (monotonic) until ``predicate`` holds (fails after :data:`WAIT`)."""
    wait_for(predicate, WAIT, what)
    return time.monotonic() - since


def test_litellm_proxy_fails_over_and_back(
    proxy: LiteLLMProxy, crd: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    routes = Routes(crd, namespace)
    with ExitStack() as stack:
        fallback = stack.enter_context(FakeBackendThread((FALLBACK_MODEL,), name="fallback"))
        create_targets(routes.core, namespace)
        urls = (proxy.url, fallback.url)
        bodies = [route(namespace, name, probe, urls) for name, probe in ROUTES.items()]
        bodies.append(route(namespace, WRONG_KEY_ROUTE, "Models", urls, secret="wrong-key"))
        for body in bodies:
            routes.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        wait_for(lambda: routes.all_routed_to("litellm"), WAIT, "both routes on LiteLLM")
        # The status write follows the routing write.
        wait_for(lambda: routes.all_active("litellm"), WAIT, "status.activeBackend=litellm")
        # Each probe reached LiteLLM, past its key check, and read a well-formed answer.
        for name, path in (("via-models", "/v1/models"), ("via-chat", "/v1/chat/completions")):
            answered = routes.backend(name, "litellm")
            assert answered.get("healthy") is True and path in answered["message"], answered
        assert '"POST /v1/chat/completions HTTP/1.1" 200' in proxy.logs()
        # ...with the key from the Secret: the route with another key is kept off LiteLLM.
        refused = wait_for(
            lambda: (b := routes.backend(WRONG_KEY_ROUTE, "litellm")).get("healthy") is False and b,
            WAIT,
            "LiteLLM unhealthy for the wrong key",
        )
        assert WRONG_KEY not in str(refused)
        off_litellm = WRONG_KEY_ROUTE + " on the fallback"
        wait_for(lambda: routes.routed_to(WRONG_KEY_ROUTE) == "fallback", WAIT, off_litellm)
        print(f"\nLiteLLM with a wrong key: {refused['reason']}: {refused['message']}")

        stopped_at = time.monotonic()
        proxy.stop()
        failover = seconds_until(
            lambda: routes.all_routed_to("fallback"), "failover to the fallback", stopped_at
        )
        wait_for(lambda: routes.all_active("fallback"), WAIT, "status.activeBackend=fallback")
        for name in ROUTES:
            assert routes.status(name)["failoverCount"] == 1
            assert routes.backend(name, "litellm")["reason"] == "Unavailable"
            assert wait_for(lambda n=name: "FailedOver" in routes.reasons(n), WAIT, "FailedOver")

        restart = proxy.start()
        failback = seconds_until(
            lambda: routes.all_routed_to("litellm"), "failback to LiteLLM", time.monotonic()
        )
        for name in ROUTES:
            wait_for(lambda n=name: "FailedBack" in routes.reasons(n), WAIT, f"{name}: FailedBack")
            assert routes.status(name)["failoverCount"] == 2
        assert fallback.backend is not None and fallback.backend.requests_total > 0
        assert routes.routed_to(WRONG_KEY_ROUTE) == "fallback"

    print(
        f"\nLiteLLM: failover {failover:.1f}s after stop, proxy restart {restart:.1f}s, "
        f"failback {failback:.1f}s after it served again"
    )
    assert MASTER_KEY not in operator.logs() and WRONG_KEY not in operator.logs()
    assert proxy.trap.attempts == [], f"LiteLLM tried to reach the network: {proxy.trap.attempts}"
