"""How the operator reaches and authenticates to the API server.

The in-cluster ServiceAccount or a kubeconfig, loaded by the ``kubernetes`` package so that every
kubeconfig feature it supports (exec plugins, client certificates, rotating tokens) works here.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Seconds between two runs of the ``kubernetes`` package's token refresh hook, at most.
REFRESH_SECONDS = 1.0


@dataclass
class Credentials:
    """How to reach and authenticate to the API server."""

    server: str
    ssl_context: ssl.SSLContext | bool
    token: str | None = field(default=None, repr=False)  # a secret: never in a log line
    refresh: Any = None  # kubernetes.client.Configuration refresh hook (in-cluster tokens)
    configuration: Any = None
    # The refresh hook runs at most once per refresh_seconds, and before the first request
    # after a 401 (expire()). Why: the hook re-applies the whole kubeconfig or in-cluster
    # configuration, and setting its host scans the environment for proxy variables. Run per
    # request, that was a quarter of the client's CPU for each Service patch of a burst
    # (bench/notes.md item 15). The hook itself re-reads a token far less often: the
    # in-cluster loader its token file once a minute, the kubeconfig loader an expiring token
    # (exec plugin, OIDC) when it is about to expire.
    refresh_seconds: float = REFRESH_SECONDS
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)
    _refreshed_at: float | None = field(default=None, init=False, repr=False, compare=False)

    def authorization(self) -> str | None:
        """The current Authorization header value (refreshing rotating tokens first, when
        the last refresh is ``refresh_seconds`` old or a request was refused with 401)."""
        if self.refresh is not None and self.configuration is not None:
            now = self.clock()
            if self._refreshed_at is None or now - self._refreshed_at >= self.refresh_seconds:
                self.refresh(self.configuration)
                self.token = _token(self.configuration) or self.token
                self._refreshed_at = now
        return f"Bearer {self.token}" if self.token else None

    def expire(self) -> None:
        """The API server refused the token (401): refresh it before the next request."""
        self._refreshed_at = None

    def answered(self, status: int) -> None:
        """Take note of an answer's HTTP status: a 401 (a rotated token) expires the token."""
        if status == 401:
            self.expire()


def load_credentials(
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    refresh_seconds: float = REFRESH_SECONDS,
) -> Credentials:
    """In-cluster credentials when running in a Pod, else the kubeconfig (KUBECONFIG);
    rotating tokens are refreshed at most every ``refresh_seconds``."""
    from kubernetes import client, config

    configuration = client.Configuration()
    if kubeconfig is None:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(context=context, client_configuration=configuration)
    else:
        config.load_kube_config(
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
    return credentials_from_configuration(configuration, refresh_seconds=refresh_seconds)


def credentials_from_configuration(
    configuration: Any, *, refresh_seconds: float = REFRESH_SECONDS
) -> Credentials:
    """Credentials from a ``kubernetes.client.Configuration``."""
    context: ssl.SSLContext | bool = False
    if configuration.verify_ssl:
        verified = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        if configuration.cert_file:
            verified.load_cert_chain(configuration.cert_file, configuration.key_file)
        context = verified
    return Credentials(
        server=configuration.host.rstrip("/"),
        ssl_context=context,
        token=_token(configuration),
        refresh=configuration.refresh_api_key_hook,
        configuration=configuration,
        refresh_seconds=refresh_seconds,
    )


def _token(configuration: Any) -> str | None:
    # Older kubernetes clients store the token under "authorization", newer under "BearerToken".
    for name in ("BearerToken", "authorization"):
        value = configuration.api_key.get(name)
        if value:
            return _without_scheme(str(value))
    return None


def _without_scheme(value: str) -> str:
    """The token of ``Bearer <token>``, the scheme in any case: the in-cluster loader stores
    ``bearer <token>``, and a header ``Bearer bearer <token>`` is refused with 401 (the API
    server takes the word after the scheme as the token)."""
    scheme, _, token = value.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else value.strip()
