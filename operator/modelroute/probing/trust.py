"""A backend's ``caBundleSecretRef``: from the watched Secret to the probe's SSL context.

The Secret is read like the auth Secrets (:func:`~modelroute.kube.secrets.secret_text`, from
the watch-fed cache), so a rotated CA reaches the next probe without a restart.  The PEM is
turned into a context by :class:`~modelroute.probing.session.TrustStore` (one per distinct
bundle).  Anything wrong (Secret or key missing, not base64 text, no PEM certificate) is a
message naming the field, the Secret and the key, for a ``SecretMissing`` probe failure: no
request is sent without the trust the spec asked for.  The PEM itself is never in a message.
"""

from __future__ import annotations

import ssl

from modelroute.api.models import CaBundleSecretRef
from modelroute.kube.cache import ObjectCache
from modelroute.kube.secrets import secret_text
from modelroute.probing.session import CaBundleError, TrustStore

__all__ = ["ca_context"]

FIELD = "caBundleSecretRef"


async def ca_context(
    secrets: ObjectCache, store: TrustStore, namespace: str, ref: CaBundleSecretRef
) -> tuple[ssl.SSLContext | None, str | None]:
    """The SSL context trusting the CA bundle ``ref`` names, or why there is none."""
    pem, error = await secret_text(secrets, namespace, ref.name, ref.key)
    if pem is None:
        return None, f"{FIELD}: {error}"
    try:
        return await store.context_for(pem), None
    except CaBundleError as exc:
        return None, f"{FIELD}: key {ref.key!r} of Secret {namespace}/{ref.name} {exc}"
