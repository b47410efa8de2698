"""How the operator reaches and authenticates to the API server.

The in-cluster ServiceAccount or a kubeconfig, loaded by the ``kubernetes`` package so that every
kubeconfig feature it supports (exec plugins, client certificates, rotating tokens) works here.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any


@dataclass
class Credentials:
    """How to reach and authenticate to the API server."""

    server: str
    ssl_context: ssl.SSLContext | bool
    token: str | None = None
    refresh: Any = None  # kubernetes.client.Configuration refresh hook (in-cluster tokens)
    configuration: Any = None

    def authorization(self) -> str | None:
        """The current Authorization header value (refreshing rotating tokens first)."""
        if self.refresh is not None and self.configuration is not None:
            self.refresh(self.configuration)
            self.token = _token(self.configuration) or self.token
        return f"Bearer {self.token}" if self.token else None


def load_credentials(kubeconfig: str | None = None, context: str | None = None) -> Credentials:
    """In-cluster credentials when running in a Pod, else the kubeconfig (KUBECONFIG)."""
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
    return credentials_from_configuration(configuration)


def credentials_from_configuration(configuration: Any) -> Credentials:
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
    )


def _token(configuration: Any) -> str | None:
    # Older kubernetes clients store the token under "authorization", newer under "BearerToken".
    for name in ("BearerToken", "authorization"):
        value = configuration.api_key.get(name)
        if value:
            return str(value).removeprefix("Bearer ").strip()
    return None
