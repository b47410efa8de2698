"""caBundleSecretRef: the schema, the probe key, the trust store and reading the Secret."""

from __future__ import annotations

import asyncio
import base64
import ssl
from pathlib import Path
from typing import Any

import pydantic
import pytest

from modelroute.api.models import AuthSecretRef, Backend, CaBundleSecretRef, ProbeSpec
from modelroute.api.validation import InvalidSpecError, parse_spec
from modelroute.crdgen import build_crd
from modelroute.kube.cache import ObjectCache, slim_secret
from modelroute.kube.client import ApiError
from modelroute.probing.keys import ProbeKey
from modelroute.probing.session import CaBundleError, TrustStore
from modelroute.probing.trust import ca_context
from tests.faults import servers

NS = "ai"
URL = "https://vllm.ai.svc:8443"


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """Two unrelated private CAs, as PEM text."""
    first = servers.make_private_ca(tmp_path_factory.mktemp("ca1"))
    second = servers.make_private_ca(tmp_path_factory.mktemp("ca2"))
    return first.ca_cert.read_text(), second.ca_cert.read_text()


def _backend(ca: CaBundleSecretRef | None = None, **fields: Any) -> Backend:
    return Backend(
        name="inhouse", priority=0, model="llama", endpoint=URL, ca_bundle_secret_ref=ca, **fields
    )


def _secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"metadata": {"name": name, "namespace": NS, "resourceVersion": "1"}, "data": encoded}


class Secrets:
    """A Secret store behind the real ObjectCache (the watch is ``observe``)."""

    def __init__(self, *bodies: dict[str, Any]) -> None:
        self.bodies = {(NS, b["metadata"]["name"]): b for b in bodies}
        self.error: Exception | None = None
        self.cache = ObjectCache(self._fetch, slim_secret)
        self.cache.subscribe((NS, "route"), [(NS, "ca"), (NS, "other")])

    async def _fetch(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.error is not None:
            raise self.error
        return self.bodies.get((namespace, name))


# -- schema ----------------------------------------------------------------------------------


def test_the_key_defaults_to_ca_crt_and_the_name_is_required() -> None:
    assert CaBundleSecretRef(name="ca").key == "ca.crt"
    spec = parse_spec({"backends": [{**_backend().to_wire(), "caBundleSecretRef": {"name": "ca"}}]})
    assert spec.backends[0].ca_bundle_secret_ref == CaBundleSecretRef(name="ca", key="ca.crt")
    with pytest.raises(pydantic.ValidationError):
        CaBundleSecretRef.model_validate({"key": "ca.crt"})
    with pytest.raises(InvalidSpecError, match=r"spec\.backends\[0\]\.caBundleSecretRef\.name"):
        parse_spec({"backends": [{**_backend().to_wire(), "caBundleSecretRef": {"name": ""}}]})


def test_the_crd_schema_requires_a_non_empty_name() -> None:
    backend = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["backends"]["items"]
    ref = backend["properties"]["caBundleSecretRef"]
    assert ref["required"] == ["name"]
    assert ref["properties"]["name"]["minLength"] == 1
    assert ref["properties"]["key"]["default"] == "ca.crt"


def test_the_backend_reads_both_of_its_secrets() -> None:
    backend = _backend(
        CaBundleSecretRef(name="ca"), auth_secret_ref=AuthSecretRef(name="key", key="apiKey")
    )
    assert backend.secret_names() == {"ca", "key"}
    assert _backend().secret_names() == set()


# -- probe key -------------------------------------------------------------------------------


def test_routes_share_a_probe_loop_only_when_they_trust_the_same_ca() -> None:
    def key(ca: CaBundleSecretRef | None) -> ProbeKey:
        return ProbeKey.for_backend(NS, _backend(ca), ProbeSpec())

    same = key(CaBundleSecretRef(name="ca")), key(CaBundleSecretRef(name="ca", key="ca.crt"))
    assert same[0] == same[1] and hash(same[0]) == hash(same[1])
    assert key(None) != same[0]
    assert key(CaBundleSecretRef(name="other")) != same[0]
    assert key(CaBundleSecretRef(name="ca", key="bundle.pem")) != same[0]
    deep = ProbeKey.deep_for_backend(
        NS, _backend(CaBundleSecretRef(name="ca")), ProbeSpec.model_validate({"deep": {}})
    )
    assert deep is not None and deep.ca == CaBundleSecretRef(name="ca")


# -- trust store -----------------------------------------------------------------------------


async def test_one_context_per_distinct_bundle_on_top_of_the_system_store(
    pems: tuple[str, str],
) -> None:
    store = TrustStore()
    first = await store.context_for(pems[0])
    assert await store.context_for(pems[0]) is first
    assert await store.context_for(pems[1]) is not first
    system = ssl.create_default_context().cert_store_stats()["x509_ca"]
    assert first.cert_store_stats()["x509_ca"] == system + 1
    both = await store.context_for(pems[0] + pems[1])
    assert both.cert_store_stats()["x509_ca"] == system + 2
    assert first.verify_mode is ssl.CERT_REQUIRED and first.check_hostname


async def test_the_process_wide_bundle_stays_in_every_context(
    pems: tuple[str, str], tmp_path: Path
) -> None:
    bundle = tmp_path / "company.pem"
    bundle.write_text(pems[1])
    context = await TrustStore(str(bundle)).context_for(pems[0])
    system = ssl.create_default_context().cert_store_stats()["x509_ca"]
    assert context.cert_store_stats()["x509_ca"] == system + 2


async def test_a_vanished_process_wide_bundle_is_an_error_not_a_crash(
    pems: tuple[str, str], tmp_path: Path
) -> None:
    with pytest.raises(CaBundleError, match=r"--ca-bundle .*gone\.pem"):
        await TrustStore(str(tmp_path / "gone.pem")).context_for(pems[0])


async def test_concurrent_misses_on_one_bundle_build_one_context(pems: tuple[str, str]) -> None:
    # A rotated shared CA: every route misses at once; one build, one context (one pool).
    store = TrustStore()
    got = await asyncio.gather(*(store.context_for(pems[0]) for _ in range(8)))
    assert len({id(context) for context in got}) == 1
    assert len(store) == 1
    assert await store.context_for(pems[0]) is got[0]


async def test_the_store_is_bounded_least_recently_used_first(pems: tuple[str, str]) -> None:
    store = TrustStore(limit=2)
    first = await store.context_for(pems[0])
    second = await store.context_for(pems[1])
    await store.context_for(pems[0])  # used again: the second is now the oldest
    await store.context_for(pems[0] + pems[1])
    assert len(store) == 2
    assert await store.context_for(pems[0]) is first
    assert await store.context_for(pems[1]) is not second  # dropped, so built again


@pytest.mark.parametrize(
    ("pem", "reason"),
    [
        ("", "holds no PEM certificate"),
        ("not a certificate\n", "holds no PEM certificate"),
        ("-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n", "no PEM certificate"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "PEM certificate"),
    ],
)
async def test_a_bundle_without_a_usable_certificate_is_refused(pem: str, reason: str) -> None:
    store = TrustStore()
    with pytest.raises(CaBundleError, match=reason) as first:
        await store.context_for(pem)
    assert "MIIB" not in str(first.value) and "AAAA" not in str(first.value)
    with pytest.raises(CaBundleError) as again:  # remembered: not parsed on every probe
        await store.context_for(pem)
    assert again.value is first.value and len(store) == 1


# -- reading the Secret ----------------------------------------------------------------------


async def test_the_context_comes_from_the_secret_and_follows_its_rotation(
    pems: tuple[str, str],
) -> None:
    secrets, store = Secrets(_secret("ca", {"ca.crt": pems[0]})), TrustStore()
    ref = CaBundleSecretRef(name="ca")
    first, error = await ca_context(secrets.cache, store, NS, ref)
    assert error is None and first is await store.context_for(pems[0])
    rotated = _secret("ca", {"ca.crt": pems[1]})
    rotated["metadata"]["resourceVersion"] = "2"
    secrets.cache.observe("MODIFIED", rotated)
    second, error = await ca_context(secrets.cache, store, NS, ref)
    assert error is None and second is await store.context_for(pems[1])
    assert second is not first
    assert secrets.cache.fetches == 1  # the watch, not the API, brought the new CA


@pytest.mark.parametrize(
    ("ref", "data", "message"),
    [
        (
            CaBundleSecretRef(name="missing"),
            {},
            "caBundleSecretRef: Secret ai/missing not found",
        ),
        (
            CaBundleSecretRef(name="ca"),
            {"tls.crt": "x"},
            "caBundleSecretRef: key 'ca.crt' not found in Secret ai/ca",
        ),
        (
            CaBundleSecretRef(name="ca", key="bundle"),
            {"bundle": "not a certificate"},
            "caBundleSecretRef: key 'bundle' of Secret ai/ca holds no PEM certificate",
        ),
    ],
)
async def test_bad_references_are_messages_naming_the_field(
    ref: CaBundleSecretRef, data: dict[str, str], message: str
) -> None:
    secrets = Secrets(_secret("ca", data))
    assert await ca_context(secrets.cache, TrustStore(), NS, ref) == (None, message)


async def test_a_binary_value_is_a_message(pems: tuple[str, str]) -> None:
    secrets = Secrets()
    der = base64.b64encode(ssl.PEM_cert_to_DER_cert(pems[0])).decode()  # DER, not PEM
    secrets.bodies[(NS, "ca")] = {"metadata": {"name": "ca"}, "data": {"ca.crt": der}}
    context, error = await ca_context(secrets.cache, TrustStore(), NS, CaBundleSecretRef(name="ca"))
    assert context is None
    assert error == "caBundleSecretRef: key 'ca.crt' of Secret ai/ca is not valid base64 text"


async def test_an_unreadable_secret_is_a_message_not_an_exception() -> None:
    secrets = Secrets()
    secrets.error = ApiError(403, "Forbidden", "secrets is forbidden")
    context, error = await ca_context(secrets.cache, TrustStore(), NS, CaBundleSecretRef(name="ca"))
    assert context is None
    assert error == "caBundleSecretRef: cannot read Secret ai/ca: 403 Forbidden"
