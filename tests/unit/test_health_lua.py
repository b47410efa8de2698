"""GitOps health: the Argo CD health check (gitops/argocd/health.lua) and kstatus conventions.

health.lua runs here under a real Lua 5.1 (lupa), the Lua version of gopher-lua that Argo CD
embeds, with each case of gitops/argocd/health_test.yaml (Argo CD's resource_customizations
layout). The test inputs are checked against the generated CRD, so they keep the real status
shape. Flux reads status through kstatus: its generic rules are ported below and run on the same
inputs. tests/envtest/test_chart.py runs both on a live route during a failover.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

from modelroute import crdgen
from tests.harness.apiserver import REPO_ROOT

ARGOCD = REPO_ROOT / "gitops" / "argocd"
HEALTH_LUA = ARGOCD / "health.lua"
CASES = yaml.safe_load((ARGOCD / "health_test.yaml").read_text())["tests"]
GITOPS_DOC = REPO_ROOT / "docs" / "gitops.md"
# Lua globals Argo CD's sandbox does not offer (no files, processes or module loading).
_UNSAFE_GLOBALS = ("io", "os", "debug", "package", "require", "dofile", "loadfile", "load")


def _lua_value(runtime: Any, value: Any) -> Any:
    # JSON null is an absent field in Argo CD's Lua view of an object.
    if isinstance(value, dict):
        table = runtime.table()
        for key, item in value.items():
            if item is not None:
                table[key] = _lua_value(runtime, item)
        return table
    if isinstance(value, list):
        table = runtime.table()
        for index, item in enumerate(value, start=1):
            table[index] = _lua_value(runtime, item)
        return table
    return value


def argo_health(obj: dict[str, Any], script: str | None = None) -> dict[str, Any]:
    """Run health.lua as Argo CD does: ``obj`` is a global, the chunk returns ``hs``."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True, register_eval=False)
    lua_globals = runtime.globals()
    for name in _UNSAFE_GLOBALS:
        lua_globals[name] = None
    lua_globals["obj"] = _lua_value(runtime, obj)
    result = runtime.execute(script if script is not None else HEALTH_LUA.read_text())
    assert result is not None, "health.lua returned nothing"
    return {str(k): v for k, v in result.items()}


def load_case(path: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ARGOCD / path).read_text())
    return loaded


# --- Argo CD ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[Path(c["inputPath"]).stem for c in CASES])
def test_health_lua_case(case: dict[str, Any]) -> None:
    assert argo_health(load_case(case["inputPath"])) == case["healthStatus"]


def test_every_testdata_file_is_a_case() -> None:
    files = {f"testdata/{p.name}" for p in (ARGOCD / "testdata").glob("*.yaml")}
    assert files == {c["inputPath"] for c in CASES}


def test_cases_cover_every_health_status() -> None:
    assert {c["healthStatus"]["status"] for c in CASES} == {
        "Healthy",
        "Progressing",
        "Degraded",
        "Suspended",
    }


def test_a_wrong_script_fails_the_cases() -> None:
    """The runner really runs the script: one that always says Healthy fails most cases."""
    always_healthy = 'hs = {}\nhs.status = "Healthy"\nhs.message = ""\nreturn hs\n'
    passed = [c for c in CASES if argo_health(load_case(c["inputPath"]), always_healthy) == c]
    assert passed == []


def test_health_lua_uses_nothing_outside_argo_cds_sandbox() -> None:
    case = load_case("testdata/healthy.yaml")
    with pytest.raises(Exception, match="attempt to"):
        argo_health(case, 'return {status = os.time() and "Healthy"}')


# --- The inputs have the real status shape ------------------------------------------------------


def _errors(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    """A small structural-schema check: types, required, enums, patterns, bounds, unknown keys."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    expected = schema.get("type")
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    }
    if expected and not checks[expected](value):
        return [f"{path}: {value!r} is not of type {expected}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
        if schema.get("format") == "date-time":
            datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: {value} > {schema['maximum']}")
    if isinstance(value, dict) and "properties" in schema:
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{path}.{name}: required")
        for name, item in value.items():
            if name not in schema["properties"]:
                errors.append(f"{path}.{name}: unknown field (the API server would prune it)")
            else:
                errors += _errors(schema["properties"][name], item, f"{path}.{name}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors += _errors(schema["items"], item, f"{path}[{index}]")
    return errors


CRD_SCHEMA = crdgen.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("case", CASES, ids=[Path(c["inputPath"]).stem for c in CASES])
def test_case_input_is_a_valid_modelroute(case: dict[str, Any]) -> None:
    obj = load_case(case["inputPath"])
    assert (obj["apiVersion"], obj["kind"]) == ("modelroute.dev/v1alpha1", "ModelRoute")
    assert _errors(CRD_SCHEMA, obj, "") == []


def test_schema_check_catches_a_made_up_status_field() -> None:
    obj = load_case("testdata/healthy.yaml")
    obj["status"]["phase"] = "Ready"
    obj["status"]["conditions"][0]["status"] = "Yes"
    errors = _errors(CRD_SCHEMA, obj, "")
    assert any("status.phase: unknown field" in e for e in errors)
    assert any("conditions[0].status" in e for e in errors)


# --- kstatus (Flux) ------------------------------------------------------------------------------


def kstatus(obj: dict[str, Any]) -> tuple[str, str]:
    """kstatus' generic rules for a custom resource (sigs.k8s.io/cli-utils pkg/kstatus/status).

    Deletion → Terminating; status.observedGeneration present and != metadata.generation →
    InProgress; Reconciling=True → InProgress; Stalled=True → Failed (the first of the two in
    list order, as kstatus reads them; the operator never sets both True); otherwise Current.
    """
    meta, status = obj["metadata"], obj.get("status") or {}
    if meta.get("deletionTimestamp"):
        return "Terminating", "Resource scheduled for deletion"
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    if generation is not None and observed is not None and observed != generation:
        return "InProgress", f"generation is {generation}, latest observed is {observed}"
    for condition in status.get("conditions", []):
        if condition["type"] == "Reconciling" and condition["status"] == "True":
            return "InProgress", condition.get("message", "")
        if condition["type"] == "Stalled" and condition["status"] == "True":
            return "Failed", condition.get("message", "")
    return "Current", ""


def test_kstatus_sees_a_stale_generation_as_in_progress() -> None:
    assert kstatus(load_case("testdata/stale_generation.yaml"))[0] == "InProgress"
    assert kstatus(load_case("testdata/healthy.yaml"))[0] == "Current"


# What kstatus makes of each case: Reconciling and Stalled, which the operator sets from Ready,
# so Flux (and kubectl wait on them) agrees with Argo CD on everything but a route with no
# healthy backend, which recovers by itself (Stalled=False) and which only Ready shows.
KSTATUS = {
    "no_status": "Current",  # nothing observed yet: kstatus needs observedGeneration
    "healthy": "Current",
    "healthy_failed_over": "Current",
    "stale_generation": "InProgress",
    "stale_ready_condition": "Current",
    "ready_missing": "Current",
    "ready_unknown": "Current",
    "awaiting_first_probes": "InProgress",
    "legacy_awaiting_first_probes": "Current",  # written before Reconciling existed
    "failback_in_progress": "InProgress",
    "degraded_all_unhealthy": "Current",
    "degraded_service_conflict": "Failed",
    "stalled_invalid_spec": "Failed",
    "suspended": "Current",  # an admin's choice: neither Reconciling nor Stalled
}


@pytest.mark.parametrize("case", CASES, ids=[Path(c["inputPath"]).stem for c in CASES])
def test_kstatus_of_each_case(case: dict[str, Any]) -> None:
    obj = load_case(case["inputPath"])
    result, message = kstatus(obj)
    assert result == KSTATUS[Path(case["inputPath"]).stem]
    if result == "Failed":  # Stalled carries Ready's reason and message: the same as Argo CD's
        assert (case["healthStatus"]["status"], message) == (
            "Degraded",
            case["healthStatus"]["message"],
        )
    if result == "InProgress":
        assert case["healthStatus"]["status"] == "Progressing"


def test_kstatus_and_argo_cd_agree_on_conditions_the_operator_writes() -> None:
    """Every case with the kstatus conditions: Failed iff Stalled, InProgress iff Reconciling."""
    for case in CASES:
        obj = load_case(case["inputPath"])
        types = {c["type"] for c in (obj.get("status") or {}).get("conditions", [])}
        if not {"Reconciling", "Stalled"} <= types:
            continue
        health, result = case["healthStatus"]["status"], kstatus(obj)[0]
        ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
        if health == "Degraded" and ready["reason"] != "AllBackendsUnhealthy":
            assert result == "Failed", case["inputPath"]
        elif health == "Progressing":
            assert result == "InProgress", case["inputPath"]
        else:
            assert result == "Current", case["inputPath"]


def test_kstatus_alone_does_not_read_ready() -> None:
    """No healthy backend is not Stalled (it recovers by itself): kstatus says Current.

    Documented in docs/gitops.md: gate on Ready with ``kubectl wait --for=condition=Ready`` or
    Flux's healthCheckExprs.
    """
    assert kstatus(load_case("testdata/degraded_all_unhealthy.yaml"))[0] == "Current"
    doc = GITOPS_DOC.read_text()
    assert "healthCheckExprs" in doc
    assert "kubectl wait modelroute/chat -n ai --for=condition=Ready" in doc
    assert "status.observedGeneration == metadata.generation" in doc


# metav1.Condition validation (k8s.io/apimachinery/pkg/apis/meta/v1/types.go).
_CONDITION_TYPE = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
_REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")


def _conditions() -> list[tuple[str, dict[str, Any]]]:
    return [
        (case["inputPath"], condition)
        for case in CASES
        for condition in (load_case(case["inputPath"]).get("status") or {}).get("conditions", [])
    ]


@pytest.mark.parametrize(("source", "condition"), _conditions())
def test_conditions_follow_metav1_condition(source: str, condition: dict[str, Any]) -> None:
    assert _CONDITION_TYPE.match(condition["type"]) and len(condition["type"]) <= 316
    assert condition["status"] in ("True", "False", "Unknown")
    assert _REASON.match(condition["reason"]) and len(condition["reason"]) <= 1024
    assert len(condition.get("message", "")) <= 32768
    assert isinstance(condition["observedGeneration"], int) and condition["observedGeneration"] >= 0
    datetime.fromisoformat(condition["lastTransitionTime"].replace("Z", "+00:00"))


def test_crd_status_has_what_kstatus_and_argo_cd_read() -> None:
    status = CRD_SCHEMA["properties"]["status"]
    assert status["properties"]["observedGeneration"]["type"] == "integer"
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    fields = conditions["items"]["properties"]
    assert {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"} <= (
        set(fields)
    )
    assert set(fields["status"]["enum"]) == {"True", "False", "Unknown"}
    version = crdgen.build_crd()["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}


# --- docs ------------------------------------------------------------------------------------


def test_gitops_doc_embeds_health_lua_verbatim() -> None:
    """The argocd-cm snippet in docs/gitops.md is health.lua itself, indented."""
    doc = GITOPS_DOC.read_text()
    for line in HEALTH_LUA.read_text().splitlines():
        if line.strip():
            assert f"\n    {line}\n" in doc, f"docs/gitops.md lacks: {line}"
