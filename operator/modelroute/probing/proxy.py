"""The egress proxy a probe goes through, from ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``.

Read once, when the probe session is made, instead of aiohttp's ``trust_env``: that looks the
environment up again, and reads ``~/.netrc``, in a worker thread for every request (two thread
hops per probe; a mass failover's probes and their results queued behind them). The semantics
are the standard library's, as aiohttp's were: :func:`urllib.request.getproxies_environment`
(lower-case variables win over upper-case ones) and
:func:`urllib.request.proxy_bypass_environment` for ``NO_PROXY`` (``*``, host names, host
suffixes with or without a leading dot, exact IP addresses; no CIDR ranges). A ``NO_PROXY``
entry may also name a ``host:port``. A proxy URL's credentials (or, as before, the proxy host's
``.netrc`` entry) authenticate to the proxy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final, NamedTuple
from urllib.request import (  # type: ignore[attr-defined]  # in urllib, not in typeshed
    getproxies_environment,
    proxy_bypass_environment,
)

import aiohttp
from aiohttp.helpers import basicauth_from_netrc, netrc_from_env, strip_auth_from_url
from yarl import URL

__all__ = ["EnvProxies", "Route"]

logger = logging.getLogger("modelroute.probing.proxy")

#: Distinct probe base URLs whose way is remembered; beyond it the memo starts afresh.
MAX_REMEMBERED: Final = 4096


class Route(NamedTuple):
    """How one base URL is reached: ``proxy`` None is directly."""

    proxy: URL | None
    auth: aiohttp.BasicAuth | None


DIRECT: Final = Route(None, None)


class EnvProxies:
    """The proxy settings of the environment, read once; :meth:`route` per probe base URL."""

    def __init__(self) -> None:
        """Read the settings from the process environment."""
        settings = getproxies_environment()
        self._no_proxy = {"no": settings["no"]} if "no" in settings else {}
        self._by_scheme = _proxies(settings)
        self._memo: dict[str, Route] = {}

    def __bool__(self) -> bool:
        return bool(self._by_scheme)

    def route(self, base_url: str) -> Route:
        """The proxy (and its credentials) for requests to ``base_url``, or :data:`DIRECT`."""
        found = self._memo.get(base_url)
        if found is None:
            if len(self._memo) >= MAX_REMEMBERED:
                self._memo.clear()
            found = self._memo[base_url] = self._decide(URL(base_url))
        return found

    def _decide(self, url: URL) -> Route:
        route = self._by_scheme.get(url.scheme)
        if route is None or not url.host:
            return DIRECT
        # The host alone, as aiohttp and urllib match it; with its port too, so that a
        # "host:port" entry can name one port of a host.
        names = (url.host, f"{url.host}:{url.port}") if url.port else (url.host,)
        if any(proxy_bypass_environment(name, self._no_proxy) for name in names):
            return DIRECT
        return route


def _proxies(settings: Mapping[str, str]) -> dict[str, Route]:
    routes: dict[str, Route] = {}
    netrc = None
    for scheme in ("http", "https"):
        if scheme not in settings:
            continue
        url, auth = strip_auth_from_url(URL(settings[scheme]))
        if url.scheme == "https":
            # aiohttp cannot talk TLS to a proxy: ignored, as aiohttp's trust_env did.
            logger.warning("%s_PROXY is an https:// proxy: not supported, ignored", scheme)
            continue
        if auth is None and url.host:
            netrc = netrc if netrc is not None else netrc_from_env()
            try:
                auth = basicauth_from_netrc(netrc, url.host)
            except LookupError:
                auth = None
        routes[scheme] = Route(url, auth)
    return routes
