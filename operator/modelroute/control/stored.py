"""What the API server stored of a status write, and a warning when its CRD is out of date.

An API server whose ModelRoute CRD predates the operator (``helm upgrade`` does not upgrade
CRDs) prunes the status fields it does not know. :func:`modelroute.core.status.accepted` keeps
them as sent, so the operator does not write them again and again; this module says so once per
field and process, naming the fix (apply the CRD of this release).
"""

from __future__ import annotations

import logging
from typing import Any

from modelroute.api.status import ModelRouteStatus
from modelroute.core import status

logger = logging.getLogger("modelroute.control.stored")

_WARNED: set[str] = set()  # fields already named in a warning, in this process


def accepted(answer: dict[str, Any], sent: ModelRouteStatus) -> ModelRouteStatus:
    """:func:`modelroute.core.status.accepted`, warning once per field that was pruned."""
    stored = answer.get("status") if isinstance(answer, dict) else None
    if isinstance(stored, dict):
        wire = sent.to_wire()
        if stored != wire:
            _warn([p for p in status.pruned_paths(stored, wire) if p not in _WARNED])
    return status.accepted(answer, sent)


def _warn(new: list[str]) -> None:
    if new:
        _WARNED.update(new)
        logger.warning(
            "the API server dropped status field(s) %s: the ModelRoute CRD looks older than "
            "the operator (helm upgrade does not upgrade CRDs); apply this release's CRD "
            "(crds/). Until then they are kept in memory only.",
            ", ".join(sorted(new)),
        )
