"""Issue 13, scenario 7: a backend's private CA trusted through its ``caBundleSecretRef``.

A real TLS loopback server whose certificate a throw-away private CA signed, probed by the real
probe hub through the operator's one shared session.  The CA comes from a Secret in the route's
namespace, read through the watch-fed cache: trusting it needs no cluster-wide change, a
rotated Secret applies from the next probe, and a route on the same URL that does not reference
it keeps its own loop and stays untrusted (one shared TLS connection pool notwithstanding).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from modelroute.api.models import Backend, CaBundleSecretRef, ProbeSpec
from modelroute.core.types import ProbeFailure
from modelroute.kube.cache import ObjectCache, slim_secret
from modelroute.metrics import Metrics
from modelroute.probing.hub import ProbeHub, ProbeKey
from modelroute.probing.prober import ProbeResult
from modelroute.probing.session import TrustStore, new_session
from tests.faults import servers
from tests.faults.servers import PrivateCA, RawServer, raw_server

NS = "team-a"
UNTRUSTED = "TLS certificate verification failed: unable to get local issuer certificate"


class Secrets:
    """The Secret the route references, behind the real watch-fed cache."""

    def __init__(self) -> None:
        self.bodies: dict[tuple[str, str], dict[str, Any]] = {}
        self.cache = ObjectCache(self._fetch, slim_secret)
        self.cache.subscribe((NS, "chat"), [(NS, "vendor-ca")])
        self.version = 0

    async def _fetch(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.bodies.get((namespace, name))

    def put(self, pem: str) -> None:
        """Create or rotate ``vendor-ca`` (as the watch would deliver it)."""
        self.version += 1
        meta = {"name": "vendor-ca", "namespace": NS, "resourceVersion": str(self.version)}
        body = {
            "metadata": meta,
            "data": {"ca.crt": base64.b64encode(pem.encode()).decode()},
        }
        self.bodies[(NS, "vendor-ca")] = body
        self.cache.observe("MODIFIED", body)


class Inbox:
    """Probe results of one subscriber, awaited by condition rather than by sleeping."""

    def __init__(self) -> None:
        self.results: list[ProbeResult] = []
        self._changed = asyncio.Event()

    def __call__(self, result: ProbeResult) -> None:
        self.results.append(result)
        self._changed.set()

    async def until(self, check: Callable[[ProbeResult], bool], within: float = 20) -> ProbeResult:
        """The first result from now on that passes ``check``."""
        seen = len(self.results)
        async with asyncio.timeout(within):
            while True:
                for result in self.results[seen:]:
                    if check(result):
                        return result
                seen = len(self.results)
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> tuple[PrivateCA, PrivateCA]:
    """The vendor's CA, and an unrelated one (a wrong rotation)."""
    return (
        servers.make_private_ca(tmp_path_factory.mktemp("vendor")),
        servers.make_private_ca(tmp_path_factory.mktemp("wrong")),
    )


@dataclass
class World:
    """The CAs, the TLS vendor one of them signed, and a probe hub reading ``vendor-ca``."""

    cas: tuple[PrivateCA, PrivateCA]
    vendor: RawServer
    hub: ProbeHub
    secrets: Secrets


@pytest.fixture
async def world(cas: tuple[PrivateCA, PrivateCA]) -> AsyncIterator[World]:
    secrets = Secrets()
    hub = ProbeHub(
        session=new_session(connection_limit=0, connection_limit_per_host=10),
        secrets=secrets.cache,
        metrics=Metrics(),
        now=lambda: datetime.now(UTC),
        start_jitter_seconds=0.0,
        max_retry_after_seconds=60.0,
        trust=TrustStore(),
    )
    async with raw_server(servers.models_ok, cas[0].server_context()) as vendor:
        yield World(cas, vendor, hub, secrets)
        await hub.close()


def _key(url: str, ca: CaBundleSecretRef | None) -> ProbeKey:
    backend = Backend(
        name="inhouse", priority=0, model="gpt-4o", endpoint=url, ca_bundle_secret_ref=ca
    )
    return ProbeKey.for_backend(NS, backend, ProbeSpec(interval_seconds=1, timeout_seconds=2))


def _ok(result: ProbeResult) -> bool:
    return result.ok


def _untrusted(result: ProbeResult) -> bool:
    return (result.reason, result.message) == (ProbeFailure.UNAVAILABLE, UNTRUSTED)


async def test_a_ca_from_the_routes_secret_is_trusted_rotated_and_kept_to_its_route(
    world: World,
) -> None:
    hub, secrets, cas = world.hub, world.secrets, world.cas
    url = world.vendor.url("localhost")
    ref = CaBundleSecretRef(name="vendor-ca")
    trusting, plain, twin = Inbox(), Inbox(), Inbox()
    hub.subscribe(_key(url, ref), trusting)
    hub.subscribe(_key(url, None), plain)
    hub.subscribe(_key(url, CaBundleSecretRef(name="vendor-ca")), twin)
    assert len(hub) == 2  # the same CA shares a loop; no CA is a loop of its own

    # Before the Secret exists: classified, naming the field, and nothing is sent.
    missing = await trusting.until(lambda r: not r.ok)
    assert (missing.reason, missing.message) == (
        ProbeFailure.SECRET_MISSING,
        f"caBundleSecretRef: Secret {NS}/vendor-ca not found",
    )
    secrets.put(cas[0].ca_cert.read_text())
    await trusting.until(_ok)
    await twin.until(_ok)
    # The route that does not reference it shares the session and its pool, not the trust.
    for _ in range(3):
        await plain.until(_untrusted)

    secrets.put(cas[1].ca_cert.read_text())  # rotated to a CA that did not sign the vendor
    await trusting.until(_untrusted)
    secrets.put("not a certificate\n")
    broken = await trusting.until(lambda r: r.reason is ProbeFailure.SECRET_MISSING)
    assert broken.message == (
        f"caBundleSecretRef: key 'ca.crt' of Secret {NS}/vendor-ca holds no PEM certificate"
    )
    secrets.put(cas[1].ca_cert.read_text() + cas[0].ca_cert.read_text())  # a bundle of two
    await trusting.until(_ok)
    assert not any(r.ok for r in plain.results)
    print(
        f"\nFIGURE caBundleSecretRef: {sum(r.ok for r in trusting.results)}/"
        f"{len(trusting.results)} ok through rotations; the route without it "
        f"{len(plain.results)}/{len(plain.results)} '{UNTRUSTED}'"
    )


async def test_a_bad_ca_secret_leaves_other_backends_alone(world: World) -> None:
    hub, secrets, vendor = world.hub, world.secrets, world.vendor
    secrets.put("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    bad, good = Inbox(), Inbox()
    hub.subscribe(_key(vendor.url("localhost"), CaBundleSecretRef(name="vendor-ca")), bad)
    async with raw_server(servers.models_ok) as plain_http:
        hub.subscribe(_key(plain_http.url(), None), good)
        failed = await bad.until(lambda r: not r.ok)
        assert failed.reason is ProbeFailure.SECRET_MISSING
        assert "AAAA" not in failed.message and "Secret team-a/vendor-ca" in failed.message
        for _ in range(2):
            await good.until(_ok)
