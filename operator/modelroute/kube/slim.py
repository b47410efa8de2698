"""What the caches keep of an object: only what routing (or probing, for a Secret) reads."""

from __future__ import annotations

from typing import Any


def slim_object(body: dict[str, Any]) -> dict[str, Any]:
    """Keep only what routing needs from an object: identity, ownership, spec and status."""
    meta = body.get("metadata", {})
    return {
        "metadata": {
            k: meta[k]
            for k in (
                "name",
                "namespace",
                "uid",
                "resourceVersion",
                "generation",  # what a gateway's status conditions are stamped against
                "labels",
                "annotations",
                "ownerReferences",
            )
            if k in meta
        },
        "spec": dict(body.get("spec", {})),
        **({"status": dict(body["status"])} if isinstance(body.get("status"), dict) else {}),
    }


def slim_secret(body: dict[str, Any]) -> dict[str, Any]:
    """Keep only the data of a Secret (never logged, never copied elsewhere)."""
    meta = body.get("metadata", {})
    return {
        "metadata": {k: meta[k] for k in ("name", "namespace", "resourceVersion") if k in meta},
        "data": dict(body.get("data") or {}),
    }
