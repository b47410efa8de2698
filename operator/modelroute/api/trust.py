"""Per-backend trust: a Secret of private CA certificates that one backend's probes trust.

Kept apart from :mod:`modelroute.api.models` (which re-exports it) to keep that module small.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from modelroute.api.base import DNS_SUBDOMAIN_PATTERN, SECRET_KEY_PATTERN, ApiModel

#: The key cert-manager and trust-manager write a CA certificate under.
DEFAULT_CA_KEY = "ca.crt"


class CaBundleSecretRef(ApiModel):
    """A Secret (same namespace) holding PEM CA certificates that probes of one backend trust.

    Added to the system trust store and the operator's ``--ca-bundle``, never replacing them.
    Read through the watched Secret cache, so a rotated CA applies from the next probe.
    """

    name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)] = (
        Field(description="Secret name (same namespace).")
    )
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=SECRET_KEY_PATTERN)] = Field(
        default=DEFAULT_CA_KEY,
        description="Key inside the Secret's data holding one or more PEM CA certificates "
        "(default ca.crt, as cert-manager and trust-manager write it).",
    )
