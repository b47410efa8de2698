"""Tests for the rules the API server cannot enforce, and for schema errors named by field path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelroute.api.models import ModelRouteSpec
from modelroute.api.validation import INVALID_SPEC, InvalidSpecError, parse_spec, problems
from modelroute.routing import spec_problems, validate

REPO = Path(__file__).resolve().parents[2]
DRIVERS = ["Service"]


def backend(name: str, priority: int = 0, ref: str | None = "svc", **extra: Any) -> dict:
    out: dict[str, Any] = {"name": name, "priority": priority, "model": "m", **extra}
    if ref is not None:
        out["serviceRef"] = {"name": ref, "port": 8000}
    return out


def raw_spec(*backends: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"service": {"name": "chat-llm", "port": 80}, "backends": list(backends), **extra}


def with_(path: str, value: Any) -> dict[str, Any]:
    """A valid two-backend spec with one field set (dotted path, ``[i]`` for list items)."""
    spec = raw_spec(backend("vendor", 0, "vendor-egress"), backend("inhouse", 1, "llama"))
    node: Any = spec
    parts = path.replace("[", ".").replace("]", "").split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    last = parts[-1]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return spec


DELETE = object()


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        pytest.param(with_("backends[0].priority", -1), "spec.backends[0].priority", id="priority"),
        pytest.param(with_("backends[1].name", "Bad_Name"), "spec.backends[1].name", id="name"),
        pytest.param(
            with_("backends[1].serviceRef.port", 0), "spec.backends[1].serviceRef.port", id="port"
        ),
        pytest.param(with_("backends[0].model", DELETE), "spec.backends[0].model", id="model"),
        pytest.param(with_("backends", []), "spec.backends", id="no-backends"),
        pytest.param(
            with_("backends", [backend(f"b{i}") for i in range(17)]),
            "spec.backends",
            id="too-many-backends",
        ),
        pytest.param(with_("service.port", 70000), "spec.service.port", id="service-port"),
        pytest.param(with_("probe.type", "Ping"), "spec.probe.type", id="probe-type"),
        pytest.param(
            with_("probe.failureThreshold", 0), "spec.probe.failureThreshold", id="threshold"
        ),
        pytest.param(
            with_("backends[1].probe", {"timeoutSeconds": 0}),
            "spec.backends[1].probe.timeoutSeconds",
            id="backend-probe-override",
        ),
        pytest.param(
            with_("backends[0].authSecretRef", {"name": "k"}),
            "spec.backends[0].authSecretRef.key",
            id="auth-secret-key",
        ),
        pytest.param(
            with_("backends[0].endpoint", "ftp://x"), "spec.backends[0].endpoint", id="endpoint"
        ),
        pytest.param(with_("failback.mode", "Sometimes"), "spec.failback.mode", id="failback"),
    ],
)
def test_parse_spec_names_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpecError) as raised:
        parse_spec(raw)
    assert str(raised.value).startswith(f"{field}: ")


def test_parse_spec_names_every_field() -> None:
    raw = with_("backends[0].priority", -1)
    raw["backends"][1]["serviceRef"]["port"] = 0
    with pytest.raises(InvalidSpecError) as raised:
        parse_spec(raw)
    message = str(raised.value)
    assert "spec.backends[0].priority: " in message
    assert "spec.backends[1].serviceRef.port: " in message
    assert message.count("; ") == 1


def test_parse_spec_accepts_the_wire_format() -> None:
    spec = parse_spec(with_("backends[0].authSecretRef", {"name": "k", "key": "apiKey"}))
    assert isinstance(spec, ModelRouteSpec)
    assert spec.backends[0].auth_secret_ref is not None
    assert spec.backends[0].auth_secret_ref.header is None  # the provider's default applies
    auth = spec.backends[0].auth_secret_ref.for_provider(spec.backends[0].provider)
    assert auth.header == "Authorization"


def test_invalid_spec_error_is_a_value_error() -> None:
    assert issubclass(InvalidSpecError, ValueError)
    assert INVALID_SPEC == "InvalidSpec"


def spec_of(*backends: dict[str, Any], driver: str = "Service") -> ModelRouteSpec:
    return ModelRouteSpec.model_validate(raw_spec(*backends, routing={"driver": driver}))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(spec_of(backend("a", ref="s1"), backend("b", ref="s2")), [], id="valid"),
        pytest.param(
            spec_of(backend("a", ref="s1"), backend("b", ref="s2"), backend("a", ref="s3")),
            ["spec.backends[2].name: duplicate backend name 'a' (also spec.backends[0].name)"],
            id="duplicate-name",
        ),
        pytest.param(
            spec_of(backend("a"), backend("b"), backend("a"), backend("a")),
            [
                "spec.backends[2].name: duplicate backend name 'a' (also spec.backends[0].name)",
                "spec.backends[3].name: duplicate backend name 'a' (also spec.backends[0].name)",
            ],
            id="duplicate-name-thrice",
        ),
        pytest.param(
            spec_of(backend("a", ref="s1"), backend("b", ref=None, endpoint="http://b.example")),
            ["spec.backends[1].serviceRef: required by the Service routing driver"],
            id="service-ref-missing",
        ),
        pytest.param(
            spec_of(backend("a", ref="chat-llm")),
            [
                "spec.backends[0].serviceRef.name: must differ from spec.service.name 'chat-llm' "
                "(the Service the operator manages)"
            ],
            id="service-ref-is-the-stable-service",
        ),
        pytest.param(
            ModelRouteSpec.model_validate({"backends": [backend("a", ref="s1")]}),
            ["spec.service: required by the Service routing driver"],
            id="service-missing",
        ),
        pytest.param(
            spec_of(backend("a", ref=None)),
            [
                "spec.backends[0].endpoint: required when the backend has no serviceRef "
                "(probes need an address)",
                "spec.backends[0].serviceRef: required by the Service routing driver",
            ],
            id="nowhere-to-probe",
        ),
        pytest.param(
            ModelRouteSpec.model_validate(
                {**raw_spec(backend("a", ref="s1")), "failback": {"steps": [10, 100]}}
            ),
            [
                "spec.failback.steps: the Service routing driver cannot split traffic (staged "
                "failback needs a weighted driver such as HTTPRoute)"
            ],
            id="steps-need-weights",
        ),
        pytest.param(
            spec_of(backend("a", ref=None, endpoint="http://a.example"), driver="Nope"),
            [
                "spec.routing.driver: unknown driver 'Nope' "
                "(available: AIGatewayRoute, HTTPRoute, Service)"
            ],
            id="unknown-driver",
        ),
    ],
)
def test_problems(spec: ModelRouteSpec, expected: list[str]) -> None:
    assert spec_problems(spec) == expected


def test_general_rules_do_not_depend_on_a_driver() -> None:
    # Duplicate names are wrong for every driver; a missing serviceRef only for Service's.
    spec = spec_of(
        backend("a", ref=None, endpoint="http://a.example"),
        backend("a", ref=None, endpoint="http://a.example"),
    )
    assert problems(spec, DRIVERS) == [
        "spec.backends[1].name: duplicate backend name 'a' (also spec.backends[0].name)"
    ]


def test_problems_lists_every_violation() -> None:
    spec = spec_of(backend("a", ref=None), backend("a", ref="chat-llm"))
    found = spec_problems(spec)
    assert [p.split(":")[0] for p in found] == [
        "spec.backends[0].endpoint",
        "spec.backends[1].name",
        "spec.backends[0].serviceRef",
        "spec.backends[1].serviceRef.name",
    ]


def test_validate_raises_with_all_problems() -> None:
    spec = spec_of(backend("a", ref=None), backend("a"))
    with pytest.raises(InvalidSpecError) as raised:
        validate(spec)
    assert str(raised.value) == "; ".join(spec_problems(spec))
    validate(spec_of(backend("a")))  # valid: no exception


def load_example() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "examples" / "chat.yaml").read_text())
    return loaded


def test_canonical_example_has_no_problems() -> None:
    spec = parse_spec(load_example()["spec"])
    assert spec_problems(spec) == []


def test_parse_spec_does_not_change_its_input() -> None:
    raw = load_example()["spec"]
    before = copy.deepcopy(raw)
    parse_spec(raw)
    assert raw == before
