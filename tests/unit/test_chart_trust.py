"""The chart's private-CA mount and egress proxy for probes (issue 13, scenario 7)."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest

from modelroute import cli
from tests.harness.helm import find, render, validate


def _pod(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    (deployment,) = find(render(values), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


@pytest.mark.parametrize("kind", ["configMap", "secret"])
def test_a_ca_bundle_is_mounted_and_passed_as_ca_bundle(kind: str) -> None:
    pod, container = _pod({"caBundle": {kind: "company-ca", "key": "bundle.pem"}})
    assert "--ca-bundle=/etc/modelroute/ca/bundle.pem" in container["args"]
    mount = {m["name"]: m for m in container["volumeMounts"]}["ca-bundle"]
    assert mount == {"name": "ca-bundle", "mountPath": "/etc/modelroute/ca", "readOnly": True}
    volume = {v["name"]: v for v in pod["volumes"]}["ca-bundle"]
    source = volume["configMap"] if kind == "configMap" else volume["secret"]
    assert source["items"] == [{"key": "bundle.pem", "path": "bundle.pem"}]
    assert source.get("name", source.get("secretName")) == "company-ca"
    # The operator's own CLI accepts the rendered flags (the file is only read at start-up).
    parsed = cli.parse_args([a for a in container["args"] if not a.startswith("--ca-bundle")])
    assert parsed[0].ca_bundle is None


def test_no_ca_bundle_and_no_proxy_by_default() -> None:
    pod, container = _pod({})
    assert not any(a.startswith("--ca-bundle") for a in container["args"])
    assert "ca-bundle" not in {v["name"] for v in pod["volumes"]}
    names = {e["name"] for e in container["env"]}
    assert not names & {"HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"}


def test_both_ca_sources_is_an_error() -> None:
    with pytest.raises(helm.HelmRenderError, match="set configMap or secret, not both"):
        render({"caBundle": {"configMap": "a", "secret": "b"}})


def test_the_proxy_values_become_the_environment() -> None:
    proxy = {"httpsProxy": "http://egress.infra:3128", "noProxy": ".svc,.example.internal"}
    _pod_spec, container = _pod({"proxy": proxy})
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HTTPS_PROXY"] == "http://egress.infra:3128"
    assert env["NO_PROXY"] == ".svc,.example.internal"
    assert "HTTP_PROXY" not in env


def test_the_schema_rejects_unknown_trust_and_proxy_keys() -> None:
    for values in ({"caBundle": {"configmap": "x"}}, {"proxy": {"https_proxy": "x"}}):
        with pytest.raises(helm.HelmValuesError):
            validate(values)
