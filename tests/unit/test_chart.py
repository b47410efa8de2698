"""The Helm chart, through the real Helm v4 engine (helm-python-sdk): lint, schema, rendering.

The rendered objects are checked against what the operator needs: the flags parse with the
operator's own CLI, RBAC has exactly the verbs of the operator's API calls (the leader-election
Lease verbs recorded from the operator's own elector), the Pod meets Pod Security "restricted".
tests/envtest/test_chart.py installs the same chart on a real API server.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import tomllib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import helm_python as helm
import pytest
import yaml

from modelroute import cli, crdgen, routing
from modelroute.control.handlers import STARTUP_RETRY_SECONDS
from modelroute.kube.client import KubeClient
from modelroute.kube.credentials import Credentials
from modelroute.kube.leader import LeaderElector, LeaseConfig
from modelroute.settings import Settings
from tests.harness.apiserver import REPO_ROOT
from tests.harness.helm import CHART_DIR, WARNING, chart_crds, find, lint, notes, render, validate

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
CHART = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
RELEASE_NS = "modelroute-system"
DEFAULT_DRIVERS: list[str] = VALUES["routing"]["drivers"]

# The documented variants (values.yaml, docs/install.md), each rendered and linted.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "leader-election": {"leaderElection": {"enabled": True}, "replicaCount": 2},
    "namespaced-leader-election": {
        "watchNamespaces": ["team-a", "team-b"],
        "leaderElection": {"enabled": True},
        "replicaCount": 2,
    },
    "servicemonitor": {"metrics": {"serviceMonitor": {"enabled": True}}},
    "monitoring": {
        "metrics": {
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
            "grafanaDashboard": {"enabled": True},
        }
    },
    "pdb": {"podDisruptionBudget": {"enabled": True}},
    "no-metrics": {"metrics": {"enabled": False}},
    "pinned-digest": {"image": {"tag": "0.1.0", "digest": "sha256:" + "ab" * 32}},
    "http-route": {"routing": {"drivers": ["Service", "HTTPRoute"]}},
    "ai-gateway-route": {"routing": {"drivers": ["Service", "AIGatewayRoute"]}},
    "sharded": {
        "shards": ["a", "b"],
        "leaderElection": {"enabled": True},
        "replicaCount": 2,
        "podDisruptionBudget": {"enabled": True},
        "metrics": {"serviceMonitor": {"enabled": True}},
    },
}

Rule = tuple[str, str, str, tuple[str, ...]]  # (apiGroup, resource, verb, resourceNames)

# What the operator calls (operator/modelroute/kube/client.py) and kopf does for it, per watched
# scope, besides the routing drivers' kinds.
CORE_RULES: set[Rule] = {
    ("modelroute.dev", "modelroutes", "get", ()),
    ("modelroute.dev", "modelroutes", "list", ()),
    ("modelroute.dev", "modelroutes", "watch", ()),
    ("modelroute.dev", "modelroutes/status", "patch", ()),
    ("", "secrets", "get", ()),
    ("", "secrets", "list", ()),
    ("", "secrets", "watch", ()),
    ("", "events", "create", ()),
}


def require_driver(name: str) -> None:
    """Fail (never skip) when a test needs a driver the registry does not have (yet)."""
    assert name in routing.names(), (
        f"routing driver {name!r} is not registered (operator/modelroute/routing/ defines "
        f"{routing.names()}): this test needs it"
    )


def driver_rules(drivers: Iterable[str]) -> set[Rule]:
    """What the routing registry declares for ``drivers``: every kind a driver routes through or
    reads is read (get on a cache miss) and watched; each driver's own routing object is created
    and patched, and deleted when a spec change moves the route to another routing object. A
    driver added without its RBAC in the chart fails the tests that compare against this."""
    rules: set[Rule] = set()
    for name in drivers:
        require_driver(name)
        info = routing.info(name)
        for kind in info.watched_kinds:
            rules |= {(kind.group, kind.plural, verb, ()) for verb in ("get", "list", "watch")}
        own = ("create", "patch", "delete")
        rules |= {(info.kind.group, info.kind.plural, verb, ()) for verb in own}
    return rules


# The default install: the chart's default routing.drivers.
BASE_RULES: set[Rule] = CORE_RULES | driver_rules(DEFAULT_DRIVERS)


def test_the_default_is_the_service_driver_with_exactly_the_service_verbs() -> None:
    assert DEFAULT_DRIVERS == ["Service"]
    assert driver_rules(DEFAULT_DRIVERS) == {
        ("", "services", verb, ()) for verb in ("get", "list", "watch", "create", "patch", "delete")
    }


def test_the_httproute_driver_needs_exactly_the_httproute_verbs() -> None:
    group = "gateway.networking.k8s.io"
    assert driver_rules(["HTTPRoute"]) == {
        (group, "httproutes", verb, ())
        for verb in ("get", "list", "watch", "create", "patch", "delete")
    }


def test_the_aigatewayroute_driver_needs_its_route_verbs_and_reads_ai_service_backends() -> None:
    group = "aigateway.envoyproxy.io"
    assert driver_rules(["AIGatewayRoute"]) == {
        (group, "aigatewayroutes", verb, ())
        for verb in ("get", "list", "watch", "create", "patch", "delete")
    } | {(group, "aiservicebackends", verb, ()) for verb in ("get", "list", "watch")}


class RecordingKube(KubeClient):
    """The operator's own KubeClient (its typed Lease helpers build the paths), answering from
    memory instead of an API server and recording every request."""

    def __init__(self) -> None:
        super().__init__(
            Credentials(server="https://kube.invalid", ssl_context=False), field_manager="test"
        )
        self.calls: list[tuple[str, str]] = []
        self._objects: dict[str, dict[str, Any]] = {}

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        urgent: bool = False,
        first: bool = False,
    ) -> dict[str, Any] | None:
        self.calls.append((method, path))
        if method == "GET":
            return copy.deepcopy(self._objects.get(path))
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(len(self.calls))
        self._objects[path if method == "PUT" else f"{path}/{body['metadata']['name']}"] = stored
        return copy.deepcopy(stored)


_API_PATH = re.compile(
    r"^/apis/(?P<group>[^/]+)/v1/namespaces/(?P<ns>[^/]+)/(?P<resource>[^/]+)(?:/(?P<name>[^/]+))?$"
)
_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def lease_rules(namespace: str = RELEASE_NS) -> set[Rule]:
    """The RBAC the operator's leader election needs: run the real elector (acquire by create,
    renew, release on shutdown) and turn each of its API requests into (group, resource, verb,
    resourceNames)."""
    name = Settings().leader_election_lease

    async def elect() -> list[tuple[str, str]]:
        kube = RecordingKube()

        async def nothing() -> None:
            return None

        elector = LeaderElector(
            kube,
            LeaseConfig(namespace=namespace, name=name, identity="pod-a", renew_seconds=0.01),
            now=lambda: datetime.now(UTC),
            on_started=nothing,
            on_stopped=nothing,
        )
        task = asyncio.create_task(elector.run())
        for _ in range(500):  # until it has created the Lease and renewed it at least once
            if [m for m, _ in kube.calls].count("PUT") >= 1:
                break
            await asyncio.sleep(0.01)
        task.cancel()  # shutting down: steps down and releases the Lease
        await asyncio.gather(task, return_exceptions=True)
        return kube.calls

    calls = asyncio.run(elect())
    methods = [m for m, _ in calls]
    assert "POST" in methods and methods.count("PUT") >= 2, calls  # create, renew, release
    rules: set[Rule] = set()
    for method, path in calls:
        match = _API_PATH.match(path)
        assert match is not None, path
        assert match["ns"] == namespace
        verb = _VERBS[method]
        # RBAC cannot restrict create by name (the name is in the body, not the path).
        names = (match["name"],) if match["name"] and verb != "create" else ()
        rules.add((match["group"], match["resource"], verb, names))
    return rules


def flat_rules(role: dict[str, Any]) -> set[Rule]:
    """One tuple per (apiGroup, resource, verb, resourceNames) a Role grants."""
    return {
        (group, resource, verb, tuple(rule.get("resourceNames", [])))
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = find(docs, "Deployment")
    return found


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = deployment(docs)["spec"]["template"]["spec"]["containers"]
    return found


def operator_settings(docs: list[dict[str, Any]]) -> Settings:
    """The Deployment's args, parsed by the operator's own CLI."""
    settings, _ = cli.parse_args(container(docs)["args"])
    return settings


# --- chart metadata and files --------------------------------------------------------------


def test_chart_metadata_matches_the_project() -> None:
    assert CHART["apiVersion"] == "v2"
    assert CHART["name"] == "modelroute-operator"
    assert CHART["appVersion"] == PYPROJECT["project"]["version"]


def test_chart_crd_is_the_generated_crd_byte_for_byte() -> None:
    top = (REPO_ROOT / "crds" / crdgen.CRD_FILENAME).read_bytes()
    chart = (CHART_DIR / "crds" / crdgen.CRD_FILENAME).read_bytes()
    assert chart == top, "charts/modelroute-operator/crds/ is stale: run `make crds`"
    assert crdgen.render_crd().encode() == chart


def test_chart_ships_only_the_modelroute_crd() -> None:
    # kopf runs standalone (leader election is a Lease): no kopf.dev peering CRDs any more.
    assert [p.name for p in (CHART_DIR / "crds").iterdir()] == [crdgen.CRD_FILENAME]
    (only,) = chart_crds()
    assert only["metadata"]["name"] == "modelroutes.modelroute.dev"


# --- lint -----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_lint_is_clean(variant: str) -> None:
    report = lint(VARIANTS[variant])
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= WARNING]
    assert problems == [], problems


# --- values.schema.json -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"watchNamespace": ["a"]}, "additional properties 'watchNamespace' not allowed"),
        ({"image": {"tagg": "0.1.0"}}, "additional properties 'tagg' not allowed"),
        ({"metrics": {"serviceMonitor": {"enable": True}}}, "'enable' not allowed"),
        ({"replicaCount": "2"}, "at '/replicaCount': got string, want integer"),
        ({"leaderElection": {"enabled": "yes"}}, "got string, want boolean"),
        ({"leaderElection": {"leaseName": "My_Lease"}}, "at '/leaderElection/leaseName'"),
        ({"leaderElection": {"peeringName": "x"}}, "additional properties 'peeringName'"),
        ({"watchNamespaces": "team-a"}, "at '/watchNamespaces': got string, want array"),
        ({"image": {"tag": "latest"}}, "at '/image/tag'"),
        ({"runAsUser": 0}, "at '/runAsUser'"),
        ({"watchNamespaces": ["Team_A"]}, "at '/watchNamespaces/0'"),
        (
            {"routing": {"drivers": ["Nope"]}},
            "at '/routing/drivers/0': value must be one of 'AIGatewayRoute', 'HTTPRoute', "
            "'Service'",
        ),
        ({"routing": {"drivers": []}}, "at '/routing/drivers': minItems: got 0, want 1"),
        (
            {"routing": {"drivers": ["Service", "Service"]}},
            "at '/routing/drivers': items at 0 and 1 are equal",
        ),
        ({"routing": {"drivers": "Service"}}, "at '/routing/drivers': got string, want array"),
        ({"routing": {"driver": ["Service"]}}, "additional properties 'driver' not allowed"),
        ({"shards": ["Shard_A"]}, "at '/shards/0'"),
        ({"shards": ["a", "a"]}, "at '/shards': items at 0 and 1 are equal"),
        ({"shards": "a"}, "at '/shards': got string, want array"),
    ],
)
def test_schema_rejects_typos_and_wrong_types_with_helms_error(
    values: dict[str, Any], error: str
) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(error)):
        validate(values)
    # An install renders with the same validation: the typo fails there too, before any template.
    with pytest.raises(helm.HelmValuesError) as caught:
        render(values)
    assert "values don't meet the specifications of the schema(s)" in str(caught.value)
    assert error in str(caught.value)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_schema_accepts_every_documented_variant(variant: str) -> None:
    validate(VARIANTS[variant])


# Objects whose insides are Kubernetes API types (validated by the API server), or Helm's own.
OPAQUE = {"/global", "/affinity/nodeAffinity", "/affinity/podAffinity", "/affinity/podAntiAffinity"}


def _object_nodes(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    types = node.get("type")
    if types == "object" or (isinstance(types, list) and "object" in types):
        found.append((path, node))
    for name, child in node.get("properties", {}).items():
        found += _object_nodes(child, f"{path}/{name}")
    if isinstance(node.get("items"), dict):
        found += _object_nodes(node["items"], f"{path}/*")
    if isinstance(node.get("additionalProperties"), dict):
        found += _object_nodes(node["additionalProperties"], f"{path}/*")
    return found


def test_schema_closes_every_object() -> None:
    """Each object either lists its keys (additionalProperties false) or is a typed map."""
    open_objects = []
    for path, node in _object_nodes(SCHEMA):
        extra = node.get("additionalProperties")
        if path in OPAQUE:
            continue
        if extra is False:
            continue
        if isinstance(extra, dict) and "type" in extra and not node.get("properties"):
            continue  # a map such as annotations: any key, typed values
        open_objects.append(path or "/")
    assert open_objects == []


def _yaml_keys(node: Any, path: str = "") -> set[str]:
    keys = set()
    if isinstance(node, dict):
        for key, value in node.items():
            keys.add(f"{path}/{key}")
            if isinstance(value, dict) and value:
                keys |= _yaml_keys(value, f"{path}/{key}")
    return keys


def _schema_keys(node: dict[str, Any], path: str = "") -> set[str]:
    keys = set()
    for key, child in node.get("properties", {}).items():
        keys.add(f"{path}/{key}")
        if child.get("properties") and f"{path}/{key}" not in OPAQUE:
            keys |= _schema_keys(child, f"{path}/{key}")
    return keys


def test_values_yaml_and_schema_have_the_same_keys() -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    schema_keys = _schema_keys(SCHEMA) - {"/global"}
    values_keys = _yaml_keys(values)
    assert values_keys - schema_keys == set(), "values.yaml keys missing in values.schema.json"
    # Every schema key has its default in values.yaml, except optional parts of K8s objects.
    optional = ("/resources/requests/ephemeral-storage", "/resources/limits/ephemeral-storage")
    missing = {k for k in schema_keys - values_keys if not k.startswith(("/affinity/", *optional))}
    assert missing == set(), "values.schema.json keys without a documented default"


def test_every_value_is_documented() -> None:
    """Each key in values.yaml has a comment right above it (or is a parent of such keys)."""
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    undocumented = []
    for index, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][\w-]*):(.*)$", line)
        if not match:
            continue
        indent, key, rest = match.groups()
        is_parent = rest.strip() == "" and index + 1 < len(lines)
        if is_parent:
            continue
        previous = lines[index - 1].strip() if index else ""
        if not previous.startswith("#"):
            undocumented.append(f"{len(indent) * ' '}{key}")
    assert undocumented == []


# --- rendering: the default install -------------------------------------------------------------


def test_default_render_has_the_cluster_wide_objects() -> None:
    docs = render()
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "modelroute-operator"
        assert labels["app.kubernetes.io/instance"] == "mr"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_default_deployment_is_one_replica_recreate_with_pinned_image() -> None:
    docs = render()
    spec = deployment(docs)["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    image = container(docs)["image"]
    assert image == f"modelroute-operator:{CHART['appVersion']}"
    assert not image.endswith(":latest")
    settings = operator_settings(docs)
    assert settings.namespaces == ()
    assert settings.leader_election is False
    assert settings.metrics_port == 8080
    assert settings.health_port == 8081
    assert settings.bind_address == "0.0.0.0"
    assert settings.log_format == "json"
    assert settings.routing_drivers == ("Service",)  # not every driver: see routing.drivers
    # The chart's defaults are the operator's own.
    defaults = Settings()
    assert settings.max_connections_per_host == defaults.max_connections_per_host
    assert settings.log_level == defaults.log_level


def test_pod_meets_pod_security_restricted_with_read_only_root() -> None:
    docs = render()
    pod = deployment(docs)["spec"]["template"]["spec"]
    (main,) = pod["containers"]
    pod_sc, sc = pod["securityContext"], main["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert isinstance(pod_sc["runAsUser"], int) and pod_sc["runAsUser"] > 0
    assert isinstance(pod_sc["runAsGroup"], int) and pod_sc["runAsGroup"] > 0
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert "hostNetwork" not in pod and "hostPID" not in pod and "hostIPC" not in pod
    # The one writable place: an emptyDir at /tmp.
    (mount,) = main["volumeMounts"]
    assert mount["mountPath"] == "/tmp"
    (volume,) = pod["volumes"]
    assert volume["name"] == mount["name"] and "emptyDir" in volume
    assert {"name": "TMPDIR", "value": "/tmp"} in main["env"]
    assert pod["automountServiceAccountToken"] is True


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_pod_namespace_comes_from_the_downward_api_in_every_variant(variant: str) -> None:
    """The operator's Lease namespace defaults to $POD_NAMESPACE: the release namespace."""
    for one in find(render(VARIANTS[variant]), "Deployment"):  # every shard's too
        docs = [one]
        env = container(docs)["env"]
        (pod_ns,) = [e for e in env if e["name"] == "POD_NAMESPACE"]
        assert pod_ns == {
            "name": "POD_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        }
        assert deployment(docs)["metadata"]["namespace"] == RELEASE_NS
        assert operator_settings(docs).leader_election_namespace == ""  # $POD_NAMESPACE is used
        assert all(e["name"] != "POD_ID" for e in env)  # kopf peering's identity: gone


def test_resources_have_requests_and_limits() -> None:
    resources = container(render())["resources"]
    assert set(resources["requests"]) >= {"cpu", "memory"}
    assert set(resources["limits"]) >= {"cpu", "memory"}


def test_probes_hit_the_operator_health_endpoints_on_its_health_port() -> None:
    docs = render({"operator": {"healthPort": 9091}, "metrics": {"port": 9090}})
    main = container(docs)
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    settings = operator_settings(docs)
    assert ports == {"health": settings.health_port, "metrics": settings.metrics_port}
    assert (settings.health_port, settings.metrics_port) == (9091, 9090)
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    # Liveness waits for the start: an operator started while the API server is down opens
    # its health port only once it is back (retrying every STARTUP_RETRY_SECONDS).
    startup = main["startupProbe"]
    assert startup["httpGet"] == {"path": "/healthz", "port": "health"}
    window = startup["periodSeconds"] * startup["failureThreshold"]
    assert window >= 300 and startup["periodSeconds"] <= STARTUP_RETRY_SECONDS


def test_cluster_domain_and_bind_address_reach_the_operator() -> None:
    defaults = operator_settings(render())
    assert (defaults.cluster_domain, defaults.bind_address) == ("cluster.local", "0.0.0.0")
    for address in ("", "::", "fd00::1", "10.0.0.5"):  # "::" unquoted would be a YAML mapping
        chosen = operator_settings(
            render({"operator": {"clusterDomain": "corp.example", "bindAddress": address}})
        )
        assert (chosen.cluster_domain, chosen.bind_address) == ("corp.example", address)
    with pytest.raises(helm.HelmValuesError, match="clusterDomain"):
        render({"operator": {"clusterDomain": "Corp.Example"}})


def test_metrics_and_health_ports_must_differ() -> None:
    with pytest.raises(helm.HelmRenderError, match="must differ"):
        render({"operator": {"healthPort": 8080}})
    assert (
        operator_settings(render({"metrics": {"enabled": False, "port": 8081}})).metrics_port == 0
    )


def test_metrics_service_targets_the_metrics_port() -> None:
    docs = render()
    (service,) = find(docs, "Service")
    pod_labels = deployment(docs)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "metrics"
    assert any(p["name"] == "metrics" for p in container(docs)["ports"])


def test_cluster_wide_rbac_is_exactly_what_the_operator_uses() -> None:
    docs = render()
    (role,) = find(docs, "ClusterRole")
    assert flat_rules(role) == BASE_RULES
    assert find(docs, "Role") == [] and find(docs, "RoleBinding") == []  # no Lease without LE
    (binding,) = find(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    (account,) = find(docs, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": RELEASE_NS}
    ]
    pod = deployment(docs)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_no_rbac_wildcards_in_any_variant(variant: str) -> None:
    for doc in render(VARIANTS[variant]):
        if doc["kind"] in ("ClusterRole", "Role"):
            for rule in doc["rules"]:
                for field in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule[field], rule
                assert "nonResourceURLs" not in rule


# --- rendering: routing drivers -----------------------------------------------------------------


def test_schema_offers_exactly_the_registered_drivers() -> None:
    require_driver("HTTPRoute")
    drivers = SCHEMA["properties"]["routing"]["properties"]["drivers"]
    assert drivers["items"]["enum"] == routing.names(), "values.schema.json: routing.drivers"
    assert drivers["uniqueItems"] is True and drivers["minItems"] == 1


@pytest.mark.parametrize(
    ("drivers", "namespaces"),
    [
        pytest.param(["Service"], [], id="service"),
        pytest.param(["HTTPRoute"], [], id="httproute-only"),
        pytest.param(["Service", "HTTPRoute"], [], id="both"),
        pytest.param(["HTTPRoute", "Service"], ["team-a", "team-b"], id="both-namespaced"),
        pytest.param(["AIGatewayRoute"], [], id="aigatewayroute-only"),
        pytest.param(["Service", "AIGatewayRoute"], ["team-a"], id="aigatewayroute-namespaced"),
        pytest.param(["AIGatewayRoute", "HTTPRoute", "Service"], [], id="all"),
    ],
)
def test_rbac_follows_the_enabled_drivers_exactly(
    drivers: list[str], namespaces: list[str]
) -> None:
    """Each driver's kinds, and nothing of a driver that is not enabled; the operator is told
    the same list, so it never watches a kind it has no RBAC for."""
    values: dict[str, Any] = {"routing": {"drivers": drivers}, "watchNamespaces": namespaces}
    docs = render(values)
    roles = find(docs, "Role") if namespaces else find(docs, "ClusterRole")
    assert len(roles) == max(len(namespaces), 1)
    for role in roles:
        assert flat_rules(role) == CORE_RULES | driver_rules(drivers)
    assert operator_settings(docs).routing_drivers == tuple(drivers)
    assert lint(values)["errors"] == []


def test_every_registered_driver_has_its_rbac_in_the_chart() -> None:
    """The chart's driver catalog (templates/_helpers.tpl) covers the whole registry."""
    require_driver("HTTPRoute")
    docs = render({"routing": {"drivers": routing.names()}})
    (role,) = find(docs, "ClusterRole")
    assert flat_rules(role) == CORE_RULES | driver_rules(routing.names())


def test_no_gateway_api_rbac_unless_the_httproute_driver_is_enabled() -> None:
    for variant in VARIANTS.values():
        enabled = variant.get("routing", {}).get("drivers", DEFAULT_DRIVERS)
        for doc in render(variant):
            if doc["kind"] in ("ClusterRole", "Role"):
                groups = {group for rule in doc["rules"] for group in rule["apiGroups"]}
                assert ("gateway.networking.k8s.io" in groups) == ("HTTPRoute" in enabled)


def test_no_ai_gateway_rbac_unless_the_aigatewayroute_driver_is_enabled() -> None:
    """Nor any RBAC on the HTTPRoutes the AI Gateway generates (the driver never writes them)."""
    require_driver("AIGatewayRoute")
    for variant in VARIANTS.values():
        enabled = variant.get("routing", {}).get("drivers", DEFAULT_DRIVERS)
        for doc in render(variant):
            if doc["kind"] in ("ClusterRole", "Role"):
                groups = {group for rule in doc["rules"] for group in rule["apiGroups"]}
                assert ("aigateway.envoyproxy.io" in groups) == ("AIGatewayRoute" in enabled)
                if "HTTPRoute" not in enabled:
                    assert "gateway.networking.k8s.io" not in groups


# --- rendering: the variants ---------------------------------------------------------------------


def test_namespaced_mode_has_a_role_per_namespace_and_nothing_cluster_wide() -> None:
    docs = render(VARIANTS["namespaced"])
    assert find(docs, "ClusterRole") == [] and find(docs, "ClusterRoleBinding") == []
    roles, bindings = find(docs, "Role"), find(docs, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for role in roles:
        assert flat_rules(role) == BASE_RULES
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"][0]["namespace"] == RELEASE_NS
    assert operator_settings(docs).namespaces == ("team-a", "team-b")


def test_lease_rules_are_get_update_on_the_lease_and_create() -> None:
    """The elector needs get and update on its own Lease, and create (not restrictable)."""
    name = (Settings().leader_election_lease,)
    assert lease_rules() == {
        ("coordination.k8s.io", "leases", "get", name),
        ("coordination.k8s.io", "leases", "update", name),
        ("coordination.k8s.io", "leases", "create", ()),
    }


def lease_role(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The leader-election Role (the one in the release namespace granting leases)."""
    (role,) = [
        r for r in find(docs, "Role") if any("leases" in rule["resources"] for rule in r["rules"])
    ]
    return role


def test_leader_election_allows_replicas_with_rolling_updates_and_a_lease() -> None:
    docs = render(VARIANTS["leader-election"])
    spec = deployment(docs)["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    settings = operator_settings(docs)
    assert settings.leader_election is True
    assert settings.leader_election_lease == Settings().leader_election_lease
    # Watched scope: unchanged, and no kopf.dev (peering) rule anywhere.
    (cluster_role,) = find(docs, "ClusterRole")
    assert flat_rules(cluster_role) == BASE_RULES
    assert not any(d["apiVersion"].startswith("kopf.dev/") for d in docs)
    # The Lease: its own Role and RoleBinding in the release namespace, exactly the elector's calls.
    role = lease_role(docs)
    assert role["metadata"]["namespace"] == RELEASE_NS
    assert flat_rules(role) == lease_rules(RELEASE_NS)
    (binding,) = find(docs, "RoleBinding")
    assert binding["metadata"]["namespace"] == RELEASE_NS
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    (account,) = find(docs, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": RELEASE_NS}
    ]


def test_namespaced_leader_election_keeps_the_lease_in_the_release_namespace() -> None:
    docs = render(VARIANTS["namespaced-leader-election"])
    role = lease_role(docs)
    assert role["metadata"]["namespace"] == RELEASE_NS
    assert flat_rules(role) == lease_rules(RELEASE_NS)
    watched = [r for r in find(docs, "Role") if r is not role]
    assert sorted(r["metadata"]["namespace"] for r in watched) == ["team-a", "team-b"]
    for other in watched:
        assert flat_rules(other) == BASE_RULES
    # Distinct names: a watched namespace that is also the release namespace gets two Roles.
    docs = render({**VARIANTS["namespaced-leader-election"], "watchNamespaces": [RELEASE_NS]})
    roles = find(docs, "Role")
    assert len({r["metadata"]["name"] for r in roles}) == len(roles) == 2
    assert {r["metadata"]["namespace"] for r in roles} == {RELEASE_NS}
    bindings = find(docs, "RoleBinding")
    assert len({b["metadata"]["name"] for b in bindings}) == len(bindings) == 2


def test_lease_name_is_a_value_passed_to_the_operator_and_its_rbac() -> None:
    docs = render({"leaderElection": {"enabled": True, "leaseName": "mr-ha"}, "replicaCount": 3})
    assert operator_settings(docs).leader_election_lease == "mr-ha"
    assert ("coordination.k8s.io", "leases", "get", ("mr-ha",)) in flat_rules(lease_role(docs))
    assert ("coordination.k8s.io", "leases", "update", ("mr-ha",)) in flat_rules(lease_role(docs))


def test_no_lease_rbac_without_rbac_create() -> None:
    docs = render({"leaderElection": {"enabled": True}, "rbac": {"create": False}})
    assert find(docs, "Role") == [] and find(docs, "RoleBinding") == []
    assert operator_settings(docs).leader_election is True


def test_more_replicas_without_leader_election_fail_to_render() -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape("needs leaderElection.enabled=true")):
        render({"replicaCount": 2})


def test_without_leader_election_replica_count_one_renders_recreate() -> None:
    spec = deployment(render({"replicaCount": 1}))["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"


def test_servicemonitor_scrapes_the_metrics_service() -> None:
    docs = render(VARIANTS["servicemonitor"])
    (monitor,) = find(docs, "ServiceMonitor")
    (service,) = find(docs, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [RELEASE_NS]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    # The route metrics' own `namespace` label wins over the Pod's (no exported_namespace).
    assert endpoint["honorLabels"] is True
    assert find(render(), "ServiceMonitor") == []


def test_metrics_can_be_turned_off() -> None:
    # Even with the ServiceMonitor on, no metrics means nothing to scrape.
    docs = render({"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}})
    assert find(docs, "Service") == [] and find(docs, "ServiceMonitor") == []
    monitoring = VARIANTS["monitoring"]["metrics"]
    docs = render({"metrics": {**monitoring, "enabled": False}})
    assert find(docs, "PrometheusRule") == [] and find(docs, "ConfigMap") == []
    assert operator_settings(docs).metrics_port == 0
    assert [p["name"] for p in container(docs)["ports"]] == ["health"]


def test_pdb_is_off_by_default_and_policy_v1_offline() -> None:
    assert find(render(), "PodDisruptionBudget") == []
    docs = render(VARIANTS["pdb"])
    (pdb,) = find(docs, "PodDisruptionBudget")
    # Offline, Helm's default capabilities are a current Kubernetes: policy/v1. On a 1.20 API
    # server the same template gives policy/v1beta1 (tests/envtest/test_chart.py).
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    pod_labels = deployment(docs)["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    docs = render({"podDisruptionBudget": {"enabled": True, "minAvailable": "50%"}})
    (pdb,) = find(docs, "PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": "50%", "selector": pdb["spec"]["selector"]}


def test_image_digest_pins_the_image() -> None:
    image = container(render(VARIANTS["pinned-digest"]))["image"]
    assert image == "modelroute-operator:0.1.0@sha256:" + "ab" * 32


def test_existing_service_account_must_be_named() -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape("serviceAccount.name is required")):
        render({"serviceAccount": {"create": False}})
    docs = render({"serviceAccount": {"create": False, "name": "ops"}})
    assert find(docs, "ServiceAccount") == []
    assert find(docs, "ClusterRoleBinding")[0]["subjects"][0]["name"] == "ops"


def test_notes_tell_how_to_watch_routes_and_upgrade_crds() -> None:
    text = notes()
    assert "kubectl get mroute -A -w" in text
    assert "kubectl apply -f charts/modelroute-operator/crds/" in text
    assert "watchNamespaces" not in text  # rendered, not raw template
    assert "team-a, team-b" in notes(VARIANTS["namespaced"])
    assert "get lease" not in text
    leader = notes(VARIANTS["leader-election"])
    assert f"kubectl -n {RELEASE_NS} get lease {Settings().leader_election_lease}" in leader
    assert "peering" not in leader


def test_install_doc_commands_use_real_values_and_paths() -> None:
    doc = (REPO_ROOT / "docs" / "install.md").read_text()
    for needle in (
        "helm install modelroute-operator charts/modelroute-operator",
        "kubectl apply --server-side -f charts/modelroute-operator/crds/",
        "kubectl apply -f examples/chat.yaml",
        "kubectl get mroute -n ai -w",
        "kubectl describe mroute chat -n ai",
        "kubectl get lease -n modelroute-system modelroute-operator",
    ):
        assert needle in doc
    for path in re.findall(r"\]\((\.\./[^)#]+)\)", doc):
        assert (REPO_ROOT / "docs" / path).resolve().exists(), path
    # Every --set in the doc is a valid value for the chart.
    sets = re.findall(r"--set '?([^'\s]+)'?", doc)
    assert sets
    for assignment in sets:
        validate(helm.parse_set_string(assignment))


# --- shards -----------------------------------------------------------------------------------

SHARD_KEY = "modelroute.dev/shard"


def by_shard(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """The objects of ``kind`` by the shard they belong to ("" for the main Deployment's)."""
    return {d["metadata"]["labels"].get(SHARD_KEY, ""): d for d in find(docs, kind)}


def pod_labels(dep: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = dep["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_no_shards_no_label_selector() -> None:
    for variant in VARIANTS.values():
        if "shards" not in variant:
            assert operator_settings(render(variant)).label_selector == ""


def test_each_shard_is_a_deployment_serving_its_label_with_its_own_lease() -> None:
    docs = render(VARIANTS["sharded"])
    deployments = by_shard(docs, "Deployment")
    assert sorted(deployments) == ["", "a", "b"]
    settings = {shard: operator_settings([dep]) for shard, dep in deployments.items()}
    assert settings[""].label_selector == f"!{SHARD_KEY}"  # every unlabelled route
    assert settings["a"].label_selector == f"{SHARD_KEY}=a"
    assert settings["b"].label_selector == f"{SHARD_KEY}=b"
    leases = {shard: s.leader_election_lease for shard, s in settings.items()}
    assert leases == {
        "": "modelroute-operator",
        "a": "modelroute-operator-a",
        "b": "modelroute-operator-b",
    }
    # The Lease Role grants exactly the Leases the Deployments elect in.
    granted = {r[3] for r in flat_rules(lease_role(docs)) if r[2] == "update"}
    assert granted == {tuple(sorted(leases.values()))}
    main = deployments[""]
    assert main["metadata"]["name"] == "mr-modelroute-operator"  # unchanged by sharding
    for shard in ("a", "b"):
        dep = deployments[shard]
        assert dep["metadata"]["name"] == f"mr-modelroute-operator-{shard}"
        assert dep["spec"]["replicas"] == main["spec"]["replicas"] == 2
        assert dep["spec"]["strategy"] == main["spec"]["strategy"]
        # The same Pod, but for its selector flag, Lease and labels.
        pod, main_pod = dep["spec"]["template"]["spec"], main["spec"]["template"]["spec"]
        shard_args = [a for a in pod["containers"][0]["args"] if "shard" not in a]
        main_args = [a for a in main_pod["containers"][0]["args"] if "shard" not in a]
        assert [a for a in shard_args if not a.startswith("--leader-election-lease")] == [
            a for a in main_args if not a.startswith("--leader-election-lease")
        ]
        assert {**pod, "containers": None} == {**main_pod, "containers": None}


def test_the_main_deployment_selector_is_unchanged_by_shards() -> None:
    """A Deployment's selector is immutable: adding shards later must not change it."""
    unsharded = deployment(render(VARIANTS["leader-election"]))
    sharded = by_shard(render(VARIANTS["sharded"]), "Deployment")[""]
    assert sharded["spec"]["selector"] == unsharded["spec"]["selector"]
    assert pod_labels(sharded) == pod_labels(unsharded)


def test_every_deployment_pdb_and_metrics_service_selects_only_its_own_pods() -> None:
    docs = render(VARIANTS["sharded"])
    deployments = by_shard(docs, "Deployment")
    pdbs, services = by_shard(docs, "PodDisruptionBudget"), by_shard(docs, "Service")
    assert sorted(pdbs) == sorted(services) == sorted(deployments)
    for owner, dep in deployments.items():
        for shard, other in deployments.items():
            mine = shard == owner
            assert selects(other["spec"]["selector"]["matchLabels"], pod_labels(dep)) is mine
            assert selects(pdbs[shard]["spec"]["selector"]["matchLabels"], pod_labels(dep)) is mine
            assert selects(services[shard]["spec"]["selector"], pod_labels(dep)) is mine
    # One ServiceMonitor scrapes every shard's metrics Service.
    (monitor,) = find(docs, "ServiceMonitor")
    for service in services.values():
        assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert len({s["metadata"]["name"] for s in services.values()}) == 3


def test_a_shard_name_too_long_for_a_label_fails_to_render() -> None:
    with pytest.raises(helm.HelmError, match="longer than 63 characters"):
        render({"shards": ["s" * 40], "fullnameOverride": "x" * 30})


def test_sharding_doc_uses_real_values_labels_and_flags() -> None:
    doc = (REPO_ROOT / "docs" / "sharding.md").read_text()
    sets = re.findall(r"--set '?([^'\s]+)'?", doc)
    assert "shards={a,b}" in sets
    for assignment in sets:
        validate(helm.parse_set_string(assignment))
    docs = render(helm.parse_set_string("shards={a,b}") | {"leaderElection": {"enabled": True}})
    names = {d["metadata"]["name"] for d in docs}
    for name in ("modelroute-operator-a", "modelroute-operator-a-metrics"):
        assert f"`{name}`" in doc and f"mr-{name}" in names
    for flag in (
        "--label-selector=modelroute.dev/shard=<name>",
        "--label-selector=!modelroute.dev/shard",
    ):
        assert flag in doc
    assert "Lease (leader election) | `modelroute-operator-a`" in doc
    lease = by_shard(docs, "Deployment")["a"]
    assert operator_settings([lease]).leader_election_lease == "modelroute-operator-a"
