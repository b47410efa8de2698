"""A backend's ``caBundleSecretRef``: from the watched Secret to the probe's SSL context.

The Secret comes from the same watch-fed cache as the auth Secrets, so a rotated CA reaches the
next probe without a restart and probing never reads the API server per interval.  The PEM is
turned into a context by :class:`~modelroute.probing.session.TrustStore` (one per distinct
bundle).  Anything wrong (Secret or key missing, not base64 text, no PEM certificate) is a
message naming the field, the Secret and the key, for a ``SecretMissing`` probe failure: no
request is sent without the trust the spec asked for.  The PEM itself is never in a message.
"""

from __future__ import annotations

import base64
import binascii
import ssl

import aiohttp

from modelroute.api.models import CaBundleSecretRef
from modelroute.kube.cache import ObjectCache
from modelroute.kube.client import ApiError
from modelroute.probing.session import CaBundleError, TrustStore

__all__ = ["ca_context"]

FIELD = "caBundleSecretRef"


async def ca_context(
    secrets: ObjectCache, store: TrustStore, namespace: str, ref: CaBundleSecretRef
) -> tuple[ssl.SSLContext | None, str | None]:
    """The SSL context trusting the CA bundle ``ref`` names, or why there is none."""
    pem, error = await _read_pem(secrets, namespace, ref)
    if pem is None:
        return None, error
    try:
        return await store.context_for(pem), None
    except CaBundleError as exc:
        return None, f"{FIELD}: key {ref.key!r} of Secret {namespace}/{ref.name} {exc}"


async def _read_pem(
    secrets: ObjectCache, namespace: str, ref: CaBundleSecretRef
) -> tuple[str | None, str | None]:
    where = f"Secret {namespace}/{ref.name}"
    try:
        secret = await secrets.get((namespace, ref.name))
    except ApiError as exc:
        return None, f"{FIELD}: cannot read {where}: {exc.status} {exc.reason}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        # The API server is unreachable: a failed probe now, not a dead probe loop.
        return None, f"{FIELD}: cannot read {where}: {type(exc).__name__}"
    if secret is None:
        return None, f"{FIELD}: {where} not found"
    if ref.key not in secret["data"]:
        return None, f"{FIELD}: key {ref.key!r} not found in {where}"
    try:
        return base64.b64decode(secret["data"][ref.key], validate=True).decode("ascii"), None
    except (binascii.Error, UnicodeDecodeError):
        return None, f"{FIELD}: key {ref.key!r} of {where} is not valid base64 PEM text"
