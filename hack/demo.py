"""`make demo`: a vendor outage and recovery, narrated, on a local API server.

With no KUBECONFIG it starts everything itself: the real kube-apiserver + etcd of the test
harness, two fake OpenAI-compatible backends ("vendor" needs an API key, "inhouse" does not),
the operator, and the canonical ModelRoute with loopback endpoints. It takes the vendor down,
brings it back, prints what `kubectl get mroute -w` and the Service show as it happens, and ends
with a summary. With KUBECONFIG set it says what it would create and asks first.

Part 2 (local API server only) tells the same story through a Gateway: the HTTPRoute driver and
the chat-gw example of docs/gateway.md, with the upstream CRDs (Gateway API, InferencePool,
Envoy Gateway) read from ../shared/third_party (or $MODELROUTE_EXTRA_CRDS) and installed before
the operator starts. No Gateway runs: the demo plays the gateway controller, writing the
HTTPRoute's status.parents as an implementation does. It shows the weights moving in a vendor
outage and a staged failback (10, 50, 100). Without the CRDs it says so and skips part 2.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from tests.fakes.openai_backend import Fault
from tests.harness.apiserver import Cluster, running_cluster
from tests.harness.gateway import GatewayScenario, GatewayVerdict, gateway_scenario
from tests.harness.kube import install_crd
from tests.harness.operator import running_operator
from tests.harness.scenario import Scenario, canonical_scenario
from tests.harness.upstream import UpstreamCRDsMissing, install_upstream_crds, load_upstream_crds

NAMESPACE = "ai"
DEMO_PROBE = {
    "intervalSeconds": 1,
    "timeoutSeconds": 1,
    "failureThreshold": 2,
    "successThreshold": 2,
}
DEMO_STABILIZATION_SECONDS = 10
# Part 2: a shorter stabilization, then traffic goes back in steps of 10 %, 50 %, 100 %.
GW_FAILBACK = {"stabilizationSeconds": 4, "steps": [10, 50, 100], "stepSeconds": 2}
START = time.monotonic()


def say(text: str) -> None:
    """A narrated line, stamped with seconds since the demo started."""
    print(f"[{time.monotonic() - START:6.1f}s] {text}", flush=True)


class RouteTable:
    """Prints `kubectl get mroute` rows (the API server's own Table rendering) on change."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        kubeconfig = yaml.safe_load(cluster.kubeconfig.read_text())
        self._token = kubeconfig["users"][0]["user"].get("token")
        self._url = (
            f"{cluster.server}/apis/modelroute.dev/v1alpha1/namespaces/{namespace}/modelroutes"
        )
        self._ssl = ssl.create_default_context(cadata=_pem(cluster.ca_data))
        self._last = ""
        self._header_printed = False

    def poll(self) -> None:
        """Fetch the table; print the row when it changed."""
        request = urllib.request.Request(
            self._url,
            headers={
                "Authorization": f"Bearer {self._token}",
                "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io",
            },
        )
        with urllib.request.urlopen(request, context=self._ssl, timeout=5) as response:
            table = json.loads(response.read())
        names = [c["name"].upper() for c in table["columnDefinitions"] if c["priority"] == 0]
        rows = [
            [
                _cell(v)
                for v, c in zip(r["cells"], table["columnDefinitions"], strict=True)
                if c["priority"] == 0
            ]
            for r in table["rows"]
        ]
        # AGE ticks every second; print a row when anything else changed.
        key = repr([row[:-1] for row in rows])
        if key == self._last:
            return
        if not self._header_printed:
            print("  $ kubectl get mroute -w\n  " + _columns(names), flush=True)
            self._header_printed = True
        for row in rows:
            print("  " + _columns(row), flush=True)
        self._last = key


def _cell(value: Any) -> str:
    return "<none>" if value is None else str(value)


def _columns(values: list[str]) -> str:
    return "".join(v.ljust(10) for v in values)


def _pem(ca_data: str | None) -> str:
    import base64

    return base64.b64decode(ca_data or "").decode()


def service_line(sc: Scenario) -> str:
    """What the stable Service points at, as one line."""
    svc = sc.stable_service()
    if svc is None:
        return "Service chat-llm: not created yet"
    ports = ", ".join(f"{p.port}->{p.target_port}" for p in svc.spec.ports or [])
    return (
        f"Service chat-llm: clusterIP {svc.spec.cluster_ip}, selector {svc.spec.selector}, "
        f"ports {ports}"
    )


def watch_until(sc: Scenario, table: RouteTable, done: Callable[[], bool], timeout: float) -> float:
    """Poll (printing table changes) until ``done``; return the seconds it took."""
    started = time.monotonic()
    while not done():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"demo: gave up after {timeout:.0f}s waiting")
        table.poll()
        time.sleep(0.1)
    table.poll()
    return time.monotonic() - started


def run_demo(cluster: Cluster) -> dict[str, float]:
    """The scenario; returns the measured failover and failback times."""
    core = client.CoreV1Api(cluster.api_client())
    install_crd(cluster)
    if not any(ns.metadata.name == NAMESPACE for ns in core.list_namespace().items):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    with ExitStack() as stack:
        sc = stack.enter_context(
            canonical_scenario(cluster, NAMESPACE, create_route=False, **DEMO_PROBE)
        )
        sc.route["spec"]["failback"]["stabilizationSeconds"] = DEMO_STABILIZATION_SECONDS
        assert sc.vendor.backend is not None
        say(f"fake vendor backend (gpt-4o, needs an API key) on {sc.vendor.url}")
        say(f"fake in-house backend (llama-3.1-70b-instruct) on {sc.inhouse.url}")
        # Part 2 needs the Gateway API kinds served before the operator starts.
        skipped = (
            install_gateway_crds(cluster)
            if cluster.is_local
            else "it runs on the local API server only (it installs CRDs and plays a gateway)"
        )
        operator = stack.enter_context(
            running_operator(cluster.admin, cluster.workdir, namespaces=[NAMESPACE])
        )
        say(
            f"operator running (metrics on :{operator.metrics_port}, "
            f"health on :{operator.health_port})"
        )
        say(
            "applying the canonical ModelRoute 'chat' with demo timings: probe every 1 s, "
            f"failureThreshold 2, stabilizationSeconds {DEMO_STABILIZATION_SECONDS}"
        )
        sc.create_route()
        table = RouteTable(cluster, NAMESPACE)
        watch_until(sc, table, lambda: sc.routed_to() == "vendor-egress", 30)
        say(service_line(sc))

        say(">>> vendor outage: the vendor backend stops accepting connections")
        sc.vendor.set_fault(Fault.REFUSED)
        failover = watch_until(sc, table, lambda: sc.routed_to() == "llama-vllm", 30)
        say(
            f"traffic moved to in-house {failover:.1f}s after the outage "
            f"(floor: 2 probes x 1 s = 2 s)"
        )
        say(service_line(sc))
        time.sleep(3)
        table.poll()

        say(">>> vendor recovers")
        sc.vendor.clear_fault()
        failback = watch_until(sc, table, lambda: sc.routed_to() == "vendor-egress", 60)
        say(
            f"traffic back on the vendor {failback:.1f}s after recovery "
            f"(stabilization {DEMO_STABILIZATION_SECONDS} s + successThreshold)"
        )
        say(service_line(sc))
        watch_until(
            sc, table, lambda: (sc.condition("Degraded") or {}).get("status") == "False", 10
        )
        print("\n  $ kubectl get events --field-selector involvedObject.name=chat")
        for event in sorted(
            sc.events(),
            key=lambda e: (e.metadata.creation_timestamp, int(e.metadata.resource_version)),
        ):
            print(f"  {event.type:8} {event.reason:22} {event.message}")
        result = {"failover_s": failover, "failback_s": failback}
        if skipped is None:
            result.update(run_gateway_demo(cluster))
        else:
            print()
            say(f"Part 2 (HTTPRoute driver through a Gateway) skipped: {skipped}")
        return result


class GatewayTable:
    """Prints a `kubectl get httproute`-like line (the weights of its one rule) with the
    ModelRoute's RoutingAccepted and Ready, whenever one of them changes."""

    def __init__(self, sc: GatewayScenario) -> None:
        self._sc = sc
        self._last: tuple[Any, ...] | None = None

    def poll(self) -> None:
        """Read the HTTPRoute and the ModelRoute; print a line when something changed."""
        # The ModelRoute first: the operator writes the HTTPRoute before status, so the
        # HTTPRoute read after it is never older than what status says.
        conditions = (self._sc.get_route().get("status") or {}).get("conditions") or []
        by_type = {c["type"]: c for c in conditions}
        accepted, ready = by_type.get("RoutingAccepted", {}), by_type.get("Ready", {})
        body = self._sc.http_route()
        refs = ((body or {}).get("spec", {}).get("rules") or [{}])[0].get("backendRefs") or []
        weights = "  ".join(f"{r['kind']}/{r['name']}={r.get('weight', 1)}" for r in refs)
        row = (
            (body or {}).get("metadata", {}).get("generation", "-"),
            weights or "<no HTTPRoute yet>",
            f"{accepted.get('status', '-')} ({accepted.get('reason', '-')})",
            f"{ready.get('status', '-')} ({ready.get('reason', '-')})",
        )
        if row == self._last:
            return
        if self._last is None:
            print(
                "  $ kubectl get httproute chat-gw -w   # rules[0].backendRefs[].weight, and the\n"
                "  #   ModelRoute's RoutingAccepted / Ready conditions beside them\n"
                f"  {'TIME':>8}  {'GEN':<4}{'BACKENDREFS (weight)':<50}"
                f"{'ROUTINGACCEPTED':<32}READY",
                flush=True,
            )
        print(
            f"  {time.monotonic() - START:7.1f}s  {row[0]!s:<4}{row[1]:<50}{row[2]:<32}{row[3]}",
            flush=True,
        )
        self._last = row

    def until(self, done: Callable[[], bool], timeout: float) -> float:
        """Poll (printing changes) until ``done``; return the seconds it took."""
        started = time.monotonic()
        while not done():
            if time.monotonic() - started > timeout:
                raise SystemExit(f"demo: gave up after {timeout:.0f}s waiting")
            self.poll()
            time.sleep(0.1)
        self.poll()
        return time.monotonic() - started


def install_gateway_crds(cluster: Cluster) -> str | None:
    """Install the upstream CRDs part 2 needs; None when done, else why part 2 is skipped."""
    try:
        crds = load_upstream_crds()
    except UpstreamCRDsMissing as exc:
        return str(exc)
    say(
        f"installing {len(crds)} upstream CRDs for part 2 (Gateway API HTTPRoute, InferencePool, "
        "Envoy Gateway Backend, ...) before the operator starts: it resolves kinds at start-up"
    )
    install_upstream_crds(cluster)
    return None


def run_gateway_demo(cluster: Cluster) -> dict[str, float]:
    """Part 2: the HTTPRoute driver; returns the measured failover and step times."""
    print("\n=== Part 2: the same outage through a Gateway (routing.driver: HTTPRoute) ===\n")
    say(
        "NOTE: no real Gateway runs here. The demo plays the gateway controller: it writes the "
        "HTTPRoute's status.parents (Accepted / ResolvedRefs for Gateway gateway-system/ai-gateway,"
        " stamped with the generation it judged), as an implementation such as Envoy Gateway does"
    )
    with gateway_scenario(
        cluster, NAMESPACE, probe=DEMO_PROBE, failback=GW_FAILBACK, create_route=False
    ) as sc:
        say(
            "applying ModelRoute 'chat-gw' from docs/gateway.md (vendor: Envoy Gateway Backend "
            "'openai', inhouse: InferencePool 'llama-pool'; probes on fake backends), failback "
            f"steps {GW_FAILBACK['steps']} held {GW_FAILBACK['stepSeconds']} s each after "
            f"{GW_FAILBACK['stabilizationSeconds']} s of stability"
        )
        sc.create_route()
        table = GatewayTable(sc)
        table.until(
            lambda: (
                sc.weights() == {"vendor": 100, "inhouse": 0}
                and sc.condition_is("RoutingAccepted", "True")
                and sc.condition_is("Ready", "True")
            ),
            30,
        )

        say(">>> vendor outage: the vendor backend stops accepting connections")
        sc.vendor.set_fault(Fault.REFUSED)
        failover = table.until(lambda: sc.weights() == {"vendor": 0, "inhouse": 100}, 30)
        say(f"HTTPRoute weights moved to in-house {failover:.1f}s after the outage, in one write")
        say(
            "(after each write RoutingAccepted may read Unknown for a moment: the gateway has "
            "not judged the new generation yet)"
        )
        table.until(lambda: sc.condition_is("RoutingAccepted", "True"), 5)

        say(">>> vendor recovers: after stabilization, traffic goes back in steps")
        recovered = time.monotonic()
        sc.vendor.clear_fault()
        steps: list[tuple[int, float]] = []

        def stepped() -> bool:
            vendor = (sc.weights() or {}).get("vendor")
            if vendor and (not steps or steps[-1][0] != vendor):
                steps.append((vendor, time.monotonic() - recovered))
            return vendor == 100

        table.until(stepped, 60)
        table.until(lambda: sc.condition_is("Degraded", "False"), 10)
        say(
            "staged failback: "
            + ", ".join(f"vendor {weight}% at +{at:.1f}s" for weight, at in steps)
            + " after recovery"
        )

        say(">>> the played gateway rejects the route (listener does not allow this namespace)")
        sc.gateway.set_verdict(
            GatewayVerdict.rejected(
                "NotAllowedByListeners", "no listener allows routes from namespace ai"
            )
        )
        rejected = table.until(lambda: sc.condition_is("Ready", "False", "GatewayRejected"), 10)
        say(f"Ready False, reason GatewayRejected, {rejected:.2f}s after the gateway said so")
        sc.gateway.set_verdict(GatewayVerdict())
        table.until(lambda: sc.condition_is("Ready", "True"), 10)

        print("\n  $ kubectl get events --field-selector involvedObject.name=chat-gw")
        for event in sorted(
            sc.events(),
            key=lambda e: (e.metadata.creation_timestamp, int(e.metadata.resource_version)),
        ):
            print(f"  {event.type:8} {event.reason:22} {event.message}")
        result = {"gw_failover_s": failover, "gw_verdict_s": rejected}
        result.update({f"gw_step_{weight}_s": at for weight, at in steps})
        return result


def confirm_real_cluster(kubeconfig: str) -> bool:
    """On a real cluster, say what would be touched and ask."""
    print(
        f"KUBECONFIG is set ({kubeconfig}). On that cluster the demo would:\n"
        "  - create or update the CustomResourceDefinition modelroutes.modelroute.dev\n"
        f"  - create namespace '{NAMESPACE}' if missing, and in it the Services vendor-egress,"
        " llama-vllm and chat-llm, the Secret vendor-key and the ModelRoute chat\n"
        "  - run the operator on this machine with your credentials, probing fake backends"
        " on this machine's loopback\n"
        "  - skip part 2 (the HTTPRoute driver): it installs CRDs and plays a gateway controller,"
        " so it runs on the local API server only\n"
        "Nothing is deleted afterwards. Unset KUBECONFIG for the self-contained local demo."
    )
    if not sys.stdin.isatty():
        print("demo: no terminal to ask on; not touching the cluster.")
        return False
    return input("Proceed? [y/N] ").strip().lower() in {"y", "yes"}


def main() -> int:
    """Run the demo on a local API server, or (after asking) on $KUBECONFIG's cluster."""
    kubeconfig = os.environ.get("KUBECONFIG")
    if kubeconfig and Path(kubeconfig).exists():
        if not confirm_real_cluster(kubeconfig):
            return 1
        os.environ["USE_EXISTING_CLUSTER"] = "1"
    else:
        os.environ.pop("USE_EXISTING_CLUSTER", None)
        say("starting a local kube-apiserver + etcd (built once into ~/.cache, ~4 min cold)")
    with running_cluster() as cluster:
        say(f"API server ready at {cluster.server}")
        result = run_demo(cluster)
    print("\nSummary")
    print(
        f"  failover: {result['failover_s']:.1f}s from vendor outage to in-house "
        "(configured floor 2 s)"
    )
    print(
        f"  failback: {result['failback_s']:.1f}s from vendor recovery to vendor "
        f"(stabilization {DEMO_STABILIZATION_SECONDS} s)"
    )
    print("  the stable Service's ClusterIP never changed; clients only ever called chat-llm")
    if "gw_failover_s" in result:
        steps = ", ".join(
            f"{key.split('_')[2]}% at +{value:.1f}s"
            for key, value in result.items()
            if key.startswith("gw_step_")
        )
        print(
            f"  HTTPRoute driver: weights vendor 100 -> 0 {result['gw_failover_s']:.1f}s after "
            f"the outage; staged failback after recovery: {steps} (stabilization "
            f"{GW_FAILBACK['stabilizationSeconds']} s, steps held {GW_FAILBACK['stepSeconds']} s)"
        )
        print(
            f"  the gateway's rejection showed as Ready=False in {result['gw_verdict_s']:.2f}s "
            "(the gateway was played by the demo)"
        )
    print(f"  total: {time.monotonic() - START:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
