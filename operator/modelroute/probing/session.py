"""The one HTTP client session all probes share: connection pool, trust store and proxy.

Kept apart from :mod:`modelroute.probing.prober` because it is the transport's configuration,
set once at start-up, while the prober is per-probe logic.

- **Trust.** Probes verify TLS against the system's CA store (``SSL_CERT_FILE`` and
  ``SSL_CERT_DIR`` move it, as for any OpenSSL program).  ``ca_bundle`` (``--ca-bundle``, the
  chart's ``caBundle`` mount) adds a PEM file of private CAs *to* that store, so a vendor behind
  a company CA and a public vendor both verify.  Verification is never switched off.
- **Proxy.** ``trust_env=True``: ``HTTPS_PROXY``/``HTTP_PROXY`` (and lower-case forms) send
  probes through an egress proxy (CONNECT for ``https://``, absolute URI for ``http://``), and
  ``NO_PROXY`` names the hosts reached directly (host suffixes, e.g. ``.svc,.cluster.local``).
"""

from __future__ import annotations

import ssl
import sys
from typing import Final

import aiohttp

__all__ = ["CaBundleError", "new_session", "ssl_context"]

# aiohttp warns (DeprecationWarning) about enable_cleanup_closed on Pythons whose asyncio no
# longer leaks aborted TLS transports (https://github.com/python/cpython/pull/118960).
_NEEDS_CLEANUP_CLOSED: Final = sys.version_info < (3, 12, 8) or (
    (3, 13) <= sys.version_info < (3, 13, 1)
)


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


def new_session(
    *, connection_limit: int, connection_limit_per_host: int, ca_bundle: str | None = None
) -> aiohttp.ClientSession:
    """Create the one session shared by all probes; call it with the event loop running.

    No cookies (a backend must not steer later probes), no ``raise_for_status`` (status codes
    are probe results), and no session timeout: :func:`~modelroute.probing.prober.probe`
    bounds each probe itself.  Raises :class:`CaBundleError` for an unusable ``ca_bundle``.
    """
    connector = aiohttp.TCPConnector(
        limit=connection_limit,
        limit_per_host=connection_limit_per_host,
        ttl_dns_cache=30,
        enable_cleanup_closed=_NEEDS_CLEANUP_CLOSED,
        ssl=ssl_context(ca_bundle),
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        raise_for_status=False,
        timeout=aiohttp.ClientTimeout(),
        trust_env=True,
    )
