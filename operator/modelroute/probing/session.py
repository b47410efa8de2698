"""The one HTTP client session all probes share: connection pool, trust store and proxy.

Kept apart from :mod:`modelroute.probing.prober` because it is the transport's configuration,
set once at start-up, while the prober is per-probe logic.

- **Trust.** Probes verify TLS against the system's CA store (``SSL_CERT_FILE`` and
  ``SSL_CERT_DIR`` move it, as for any OpenSSL program).  ``ca_bundle`` (``--ca-bundle``, the
  chart's ``caBundle`` mount) adds a PEM file of private CAs *to* that store, so a vendor behind
  a company CA and a public vendor both verify.  A backend's ``caBundleSecretRef`` adds its
  own PEM on top of both, for that backend's probes only: :class:`TrustStore` builds one
  context per distinct bundle (by content hash, so a rotated CA gets a new one and routes with
  the same CA share one, and its pooled connections).  Verification is never switched off.
- **Proxy.** ``HTTPS_PROXY``/``HTTP_PROXY`` (and lower-case forms) send probes through an
  egress proxy (CONNECT for ``https://``, absolute URI for ``http://``), and ``NO_PROXY`` names
  the hosts reached directly (host suffixes, e.g. ``.svc,.cluster.local``). Read once here
  (:class:`~modelroute.probing.proxy.EnvProxies`, see :func:`proxy_route`), not by aiohttp's
  ``trust_env`` on every request.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ssl
import sys
import weakref
from collections import OrderedDict
from typing import Final

import aiohttp

from modelroute.probing.proxy import DIRECT, EnvProxies, Route
from modelroute.settings import Settings

__all__ = ["CaBundleError", "TrustStore", "new_session", "proxy_route", "ssl_context"]

# aiohttp warns (DeprecationWarning) about enable_cleanup_closed on Pythons whose asyncio no
# longer leaks aborted TLS transports (https://github.com/python/cpython/pull/118960).
_NEEDS_CLEANUP_CLOSED: Final = sys.version_info < (3, 12, 8) or (
    (3, 13) <= sys.version_info < (3, 13, 1)
)


#: Distinct per-backend CA bundles kept as SSL contexts by default (the operator passes its
#: ``max_trust_contexts`` setting, whose default this is).
MAX_TRUST_CONTEXTS: Final = Settings.max_trust_contexts

#: The proxy settings each session of :func:`new_session` was made with.
_PROXIES: weakref.WeakKeyDictionary[aiohttp.ClientSession, EnvProxies] = weakref.WeakKeyDictionary()


class CaBundleError(ValueError):
    """The CA bundle file cannot be read or holds no PEM certificate."""


def ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """The system trust store, plus the PEM certificates in ``ca_bundle`` when given."""
    context = ssl.create_default_context()
    if ca_bundle:
        try:
            context.load_verify_locations(cafile=ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            # Fail at start-up, not on every probe: a typo must not read as "vendor down".
            raise CaBundleError(f"--ca-bundle {ca_bundle}: {exc.strerror or exc}") from None
    return context


class TrustStore:
    """SSL contexts for probes: the process-wide one, plus one per distinct extra PEM bundle."""

    def __init__(self, ca_bundle: str | None = None, limit: int = MAX_TRUST_CONTEXTS) -> None:
        self._ca_bundle = ca_bundle
        self._limit = limit
        # A bad bundle is remembered too: it is not parsed again on every probe.
        self._contexts: OrderedDict[bytes, ssl.SSLContext | CaBundleError] = OrderedDict()
        # Builds in progress, one per digest: concurrent misses (every route of a rotated shared
        # CA) wait for the same build, not one context (and connection pool) each.
        self._building: dict[bytes, asyncio.Future[ssl.SSLContext | CaBundleError]] = {}

    def __len__(self) -> int:
        return len(self._contexts)

    async def context_for(self, pem: str) -> ssl.SSLContext:
        """The system store, ``--ca-bundle`` and the certificates in ``pem``, cached by content.

        Raises :class:`CaBundleError` when ``pem`` holds no certificate or a broken one.
        """
        digest = hashlib.sha256(pem.encode()).digest()
        context = self._contexts.get(digest)
        if context is None:
            context = await self._built(digest, pem)
        if digest in self._contexts:
            self._contexts.move_to_end(digest)
        if isinstance(context, CaBundleError):
            raise context
        return context

    async def _built(self, digest: bytes, pem: str) -> ssl.SSLContext | CaBundleError:
        """The context of ``digest``, built once however many callers miss it at once (a
        caller cancelled meanwhile leaves the build to finish and be cached)."""
        building = self._building.get(digest)
        if building is None:
            # Loading the system store takes tens of milliseconds: not on the event loop. The
            # cache itself is only touched on the loop.
            building = asyncio.ensure_future(asyncio.to_thread(self._build, pem))
            self._building[digest] = building
            building.add_done_callback(functools.partial(self._cache, digest))
        return await asyncio.shield(building)

    def _cache(self, digest: bytes, done: asyncio.Future[ssl.SSLContext | CaBundleError]) -> None:
        self._building.pop(digest, None)
        if done.cancelled() or done.exception() is not None:
            return
        self._contexts[digest] = done.result()
        if len(self._contexts) > self._limit:
            self._contexts.popitem(last=False)

    def _build(self, pem: str) -> ssl.SSLContext | CaBundleError:
        try:
            context = ssl_context(self._ca_bundle)
            context.load_verify_locations(cadata=pem)
        except CaBundleError as exc:  # --ca-bundle's file went away since start-up
            return exc
        except (ssl.SSLError, ValueError) as exc:
            # Only OpenSSL's reason: the PEM itself is never echoed.
            return CaBundleError(_pem_reason(exc))
        return context


def _pem_reason(exc: Exception) -> str:
    # OpenSSL says "no start line" when no BEGIN CERTIFICATE block parses; never echo the PEM.
    if not isinstance(exc, ssl.SSLError) or "no start line" in str(exc):
        return "holds no PEM certificate"
    return f"holds a broken PEM certificate ({exc.reason or 'unreadable'})"


def new_session(
    *, connection_limit: int, connection_limit_per_host: int, ca_bundle: str | None = None
) -> aiohttp.ClientSession:
    """Create the one session shared by all probes; call it with the event loop running.

    No cookies (a backend must not steer later probes), no ``raise_for_status`` (status codes
    are probe results), and no session timeout: :func:`~modelroute.probing.prober.probe`
    bounds each probe itself.  The proxy settings are read now (see :func:`proxy_route`).
    Raises :class:`CaBundleError` for an unusable ``ca_bundle``.
    """
    connector = aiohttp.TCPConnector(
        limit=connection_limit,
        limit_per_host=connection_limit_per_host,
        ttl_dns_cache=30,
        enable_cleanup_closed=_NEEDS_CLEANUP_CLOSED,
        ssl=ssl_context(ca_bundle),
    )
    session = aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        raise_for_status=False,
        timeout=aiohttp.ClientTimeout(),
        trust_env=False,  # the proxy settings are read once, above each request: proxy_route
    )
    _PROXIES[session] = EnvProxies()
    return session


def proxy_route(session: aiohttp.ClientSession, base_url: str) -> Route:
    """The egress proxy for a probe of ``base_url`` on ``session``: the environment's as
    :func:`new_session` read it, or :data:`~modelroute.probing.proxy.DIRECT` (also for a
    session made elsewhere, which takes no proxy settings from the environment)."""
    proxies = _PROXIES.get(session)
    return proxies.route(base_url) if proxies else DIRECT
