"""The shipped example is the contract's canonical example, and it means what the contract says.

The contract lives outside the repository (``../shared/design/modelroute-api.md``); users who
clone the repository do not have it, so the comparison with it is skipped there.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelroute import routing
from modelroute.api.models import FailbackMode, ModelRouteSpec, ProbeType
from modelroute.api.validation import problems

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "chat.yaml"
CONTRACT = REPO.parent / "shared" / "design" / "modelroute-api.md"


def canonical_block(markdown: str) -> str:
    """The yaml code block under the "## Canonical example" heading."""
    section = re.search(r"^## Canonical example.*?$(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    assert section is not None, "the contract has no '## Canonical example' section"
    block = re.search(r"^```ya?ml\s*$(.*?)^```\s*$", section.group(1), re.M | re.S)
    assert block is not None, "the canonical example section has no yaml code block"
    return block.group(1)


def load_example() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return loaded


def test_canonical_block_is_found() -> None:
    markdown = (
        "# T\n## Canonical example (x)\ntext\n```yaml\na: 1\n```\n## Next\n```yaml\nb: 2\n```\n"
    )
    assert yaml.safe_load(canonical_block(markdown)) == {"a": 1}


def test_example_is_the_canonical_example() -> None:
    if not CONTRACT.exists():
        pytest.skip(f"contract {CONTRACT} not present (it lives outside the repository)")
    canonical = yaml.safe_load(canonical_block(CONTRACT.read_text()))
    assert load_example() == canonical, (
        f"{EXAMPLE.relative_to(REPO)} differs from the canonical example in {CONTRACT}"
    )


def test_example_identity() -> None:
    example = load_example()
    assert example["apiVersion"] == "modelroute.dev/v1alpha1"
    assert example["kind"] == "ModelRoute"
    assert example["metadata"] == {"name": "chat", "namespace": "ai"}


@pytest.fixture(scope="module")
def spec() -> ModelRouteSpec:
    return ModelRouteSpec.model_validate(load_example()["spec"])


def test_example_parses_to_the_documented_values(spec: ModelRouteSpec) -> None:
    assert (spec.service.name, spec.service.port) == ("chat-llm", 80)
    assert [(b.name, b.priority, b.model) for b in spec.backends] == [
        ("vendor", 0, "gpt-4o"),
        ("inhouse", 1, "llama-3.1-70b-instruct"),
    ]
    vendor, inhouse = spec.backends
    assert vendor.service_ref is not None
    assert (vendor.service_ref.name, vendor.service_ref.port) == ("vendor-egress", 8080)
    assert inhouse.service_ref is not None
    assert (inhouse.service_ref.name, inhouse.service_ref.port) == ("llama-vllm", 8000)
    assert [b.name for b in spec.preference_order()] == ["vendor", "inhouse"]
    assert spec.probe.type is ProbeType.OPENAI_MODELS
    assert spec.failback.mode is FailbackMode.AUTOMATIC
    assert problems(spec, routing.names()) == []


def test_example_gets_the_documented_defaults(spec: ModelRouteSpec) -> None:
    vendor, inhouse = spec.backends
    assert vendor.auth_secret_ref is not None
    assert (vendor.auth_secret_ref.name, vendor.auth_secret_ref.key) == ("vendor-key", "apiKey")
    # Sent as "Authorization: Bearer <key>": the OpenAI provider's defaults.
    auth = vendor.auth_secret_ref.for_provider(vendor.provider)
    assert (auth.header, auth.prefix) == ("Authorization", "Bearer ")
    assert inhouse.auth_secret_ref is None
    assert vendor.probe_url("ai") == "http://vendor-egress.ai.svc:8080"
    assert inhouse.probe_url("ai") == "http://llama-vllm.ai.svc:8000"
    assert spec.routing.driver == "Service"
    assert spec.probe.latency_threshold_ms is None
    for backend in spec.backends:
        assert spec.effective_probe(backend) == spec.probe


@pytest.mark.parametrize("section", ["probe", "failback"])
def test_example_values_are_the_defaults(spec: ModelRouteSpec, section: str) -> None:
    # The example spells out exactly the documented defaults: leaving a section out changes
    # nothing (intervalSeconds 5, timeoutSeconds 2, failureThreshold 3, successThreshold 2,
    # mode Automatic, stabilizationSeconds 60).
    raw = load_example()["spec"]
    del raw[section]
    assert ModelRouteSpec.model_validate(raw) == spec
    probe = ModelRouteSpec.model_validate(raw).probe
    assert (
        probe.interval_seconds,
        probe.timeout_seconds,
        probe.failure_threshold,
        probe.success_threshold,
    ) == (5, 2, 3, 2)
    failback = ModelRouteSpec.model_validate(raw).failback
    assert (failback.mode, failback.stabilization_seconds) == (FailbackMode.AUTOMATIC, 60)


def test_example_round_trips_through_the_wire_format(spec: ModelRouteSpec) -> None:
    wire = spec.to_wire()
    assert ModelRouteSpec.model_validate(wire) == spec
    example = load_example()["spec"]
    assert wire["backends"][0]["serviceRef"] == example["backends"][0]["serviceRef"]
    assert wire["probe"]["intervalSeconds"] == example["probe"]["intervalSeconds"]
