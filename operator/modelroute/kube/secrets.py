"""One value of a Secret, read through the watch-fed cache, or why there is none.

Probes read their API keys (``authSecretRef``) and CA bundles (``caBundleSecretRef``) this way:
from the cache the Secret watch keeps fresh, so a rotated value reaches the next probe without
a restart and probing never reads the API server per interval.  A problem is a message naming
the Secret and the key, never the value, for a ``SecretMissing`` probe failure.
"""

from __future__ import annotations

import base64
import binascii

import aiohttp

from modelroute.kube.cache import ObjectCache
from modelroute.kube.client import ApiError

__all__ = ["secret_text"]


async def secret_text(
    secrets: ObjectCache, namespace: str, name: str, key: str
) -> tuple[str | None, str | None]:
    """The text under ``key`` of Secret ``namespace/name``, or ``(None, why there is none)``."""
    where = f"Secret {namespace}/{name}"
    try:
        secret = await secrets.get((namespace, name))
    except ApiError as exc:
        return None, f"cannot read {where}: {exc.status} {exc.reason}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        # The API server is unreachable: a failed probe now, not a dead probe loop.
        return None, f"cannot read {where}: {type(exc).__name__}"
    if secret is None:
        return None, f"{where} not found"
    if key not in secret["data"]:
        return None, f"key {key!r} not found in {where}"
    try:
        return base64.b64decode(secret["data"][key]).decode(), None
    except (binascii.Error, UnicodeDecodeError):
        return None, f"key {key!r} of {where} is not valid base64 text"
