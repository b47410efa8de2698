"""The Helm chart, through the real Helm v4 engine (helm-python-sdk): lint, schema, rendering.

The rendered objects are checked against what the operator needs: the flags parse with the
operator's own CLI, RBAC has exactly the verbs of the operator's API calls, the Pod meets Pod
Security "restricted". tests/envtest/test_chart.py installs the same chart on a real API server.
"""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import helm_python as helm
import pytest
import yaml

from modelroute import cli, crdgen
from modelroute.settings import Settings
from tests.harness.apiserver import REPO_ROOT
from tests.harness.helm import CHART_DIR, WARNING, chart_crds, find, lint, notes, render, validate

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
CHART = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())
RELEASE_NS = "modelroute-system"

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
    "pdb": {"podDisruptionBudget": {"enabled": True}},
    "no-metrics": {"metrics": {"enabled": False}},
    "pinned-digest": {"image": {"tag": "0.1.0", "digest": "sha256:" + "ab" * 32}},
}

# What the operator calls (operator/modelroute/kube.py) and kopf does for it, per scope.
BASE_RULES = {
    ("modelroute.dev", "modelroutes", "list", ()),
    ("modelroute.dev", "modelroutes", "watch", ()),
    ("modelroute.dev", "modelroutes/status", "patch", ()),
    ("", "services", "get", ()),
    ("", "services", "list", ()),
    ("", "services", "watch", ()),
    ("", "services", "create", ()),
    ("", "services", "patch", ()),
    ("", "secrets", "get", ()),
    ("", "secrets", "list", ()),
    ("", "secrets", "watch", ()),
    ("", "events", "create", ()),
}


def peering_rules(plural: str) -> set[tuple[str, str, str, tuple[str, ...]]]:
    name = (Settings().peering_name,)
    return {
        ("kopf.dev", plural, "list", ()),
        ("kopf.dev", plural, "watch", ()),
        ("kopf.dev", plural, "get", name),
        ("kopf.dev", plural, "patch", name),
    }


def flat_rules(role: dict[str, Any]) -> set[tuple[str, str, str, tuple[str, ...]]]:
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


def test_chart_ships_kopf_peering_crds_that_kopf_resolves() -> None:
    from kopf._cogs.structs import references

    peering = [c for c in chart_crds() if c["spec"]["group"] == "kopf.dev"]
    assert len(peering) == 2
    for selector, namespaced in (
        (references.CLUSTER_PEERINGS_K, False),
        (references.NAMESPACED_PEERINGS_K, True),
    ):
        resources = [
            references.Resource(
                group=crd["spec"]["group"],
                version=version["name"],
                plural=crd["spec"]["names"]["plural"],
                kind=crd["spec"]["names"]["kind"],
                singular=crd["spec"]["names"]["singular"],
                namespaced=crd["spec"]["scope"] == "Namespaced",
                subresources=frozenset(version.get("subresources", {})),
            )
            for crd in peering
            for version in crd["spec"]["versions"]
            if version["served"]
        ]
        (resource,) = [r for r in resources if selector.check(r)]
        assert resource.namespaced is namespaced
        # kopf writes keep-alives into status; with a status subresource it would patch /status
        # (patching.patch_obj), so the CRD has none and keeps unknown status fields.
        assert resource.subresources == frozenset()
        crd = next(c for c in peering if c["spec"]["names"]["plural"] == resource.plural)
        status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
        assert status == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


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
        ({"watchNamespaces": "team-a"}, "at '/watchNamespaces': got string, want array"),
        ({"image": {"tag": "latest"}}, "at '/image/tag'"),
        ({"runAsUser": 0}, "at '/runAsUser'"),
        ({"watchNamespaces": ["Team_A"]}, "at '/watchNamespaces/0'"),
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
    # kopf's peering identity is the Pod name.
    pod_id = next(e for e in main["env"] if e["name"] == "POD_ID")
    assert pod_id["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert pod["automountServiceAccountToken"] is True


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


def test_leader_election_allows_replicas_with_rolling_updates_and_peering() -> None:
    docs = render(VARIANTS["leader-election"])
    spec = deployment(docs)["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert operator_settings(docs).leader_election is True
    (peering,) = find(docs, "ClusterKopfPeering")
    assert peering["apiVersion"] == "kopf.dev/v1"
    assert peering["metadata"]["name"] == Settings().peering_name
    (role,) = find(docs, "ClusterRole")
    assert flat_rules(role) == BASE_RULES | peering_rules("clusterkopfpeerings")


def test_namespaced_leader_election_has_a_peering_per_namespace() -> None:
    docs = render(VARIANTS["namespaced-leader-election"])
    peerings = find(docs, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["team-a", "team-b"]
    assert {p["metadata"]["name"] for p in peerings} == {Settings().peering_name}
    assert find(docs, "ClusterKopfPeering") == []
    for role in find(docs, "Role"):
        assert flat_rules(role) == BASE_RULES | peering_rules("kopfpeerings")


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
    assert find(render(), "ServiceMonitor") == []


def test_metrics_can_be_turned_off() -> None:
    # Even with the ServiceMonitor on, no metrics means nothing to scrape.
    docs = render({"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}})
    assert find(docs, "Service") == [] and find(docs, "ServiceMonitor") == []
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


def test_install_doc_commands_use_real_values_and_paths() -> None:
    doc = (REPO_ROOT / "docs" / "install.md").read_text()
    for needle in (
        "helm install modelroute-operator charts/modelroute-operator",
        "kubectl apply --server-side -f charts/modelroute-operator/crds/",
        "kubectl apply -f examples/chat.yaml",
        "kubectl get mroute -n ai -w",
        "kubectl describe mroute chat -n ai",
    ):
        assert needle in doc
    for path in re.findall(r"\]\((\.\./[^)#]+)\)", doc):
        assert (REPO_ROOT / "docs" / path).resolve().exists(), path
    # Every --set in the doc is a valid value for the chart.
    sets = re.findall(r"--set '?([^'\s]+)'?", doc)
    assert sets
    for assignment in sets:
        validate(helm.parse_set_string(assignment))
