"""Kubernetes label selectors as the operator's ``--label-selector`` accepts them (sharding).

The API server filters the ModelRoute list and watch by the selector, so this module only
checks the text at start-up, where a clear error is possible, and gives it one canonical form:
an invalid selector would otherwise surface as an endless 400 from every watch, and two
spellings of one selector must name the same leader-election Lease.

Supported requirements, comma-separated (all must hold): ``key``, ``!key``, ``key=value``,
``key==value``, ``key!=value``, ``key in (v1,v2)``, ``key notin (v1,v2)``.
"""

from __future__ import annotations

import hashlib
import re

# A label key: an optional DNS-subdomain prefix and "/", then a name of at most 63 characters.
_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_PREFIX = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
_KEY = re.compile(rf"(?:{_PREFIX}/)?{_NAME}")
_VALUE = re.compile(rf"(?:{_NAME})?")
_SET = re.compile(r"^(\S+)\s+(in|notin)\s*\((.*)\)$")
_COMPARE = re.compile(r"^([^!=\s]+)\s*(==|!=|=)\s*(\S*)$")
_FORMS = "key, !key, key=value, key==value, key!=value, key in (a,b), key notin (a,b)"


class SelectorError(ValueError):
    """A label selector the operator cannot use, with the reason."""


def canonical(selector: str) -> str:
    """The selector in one canonical spelling (requirements sorted, no spaces, ``=`` for
    ``==``), or "" for an empty one; raises :class:`SelectorError` when it is invalid."""
    if not selector.strip():
        return ""
    return ",".join(sorted(_requirement(part.strip()) for part in _split(selector)))


def lease_suffix(selector: str) -> str:
    """Eight hex digits naming a selector (Flux's leader-election ID does the same): operators
    with different selectors elect leaders in different Leases, replicas of one shard share."""
    return hashlib.sha256(canonical(selector).encode()).hexdigest()[:8]


def _split(selector: str) -> list[str]:
    """Split at the commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(selector):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth not in (0, 1):
            raise SelectorError(f"unbalanced parentheses in label selector {selector!r}")
        if char == "," and depth == 0:
            parts.append(selector[start:i])
            start = i + 1
    if depth:
        raise SelectorError(f"unbalanced parentheses in label selector {selector!r}")
    return [*parts, selector[start:]]


def _requirement(text: str) -> str:
    if not text:
        raise SelectorError("empty requirement in label selector (a stray comma?)")
    if match := _SET.match(text):
        key, op, values = match.groups()
        items = sorted({_value(v.strip(), text) for v in values.split(",")})
        if items == [""]:
            raise SelectorError(f"{text!r} in label selector needs at least one value")
        return f"{_key(key, text)} {op} ({','.join(items)})"
    if match := _COMPARE.match(text):
        key, op, value = match.groups()
        return f"{_key(key, text)}{'=' if op == '==' else op}{_value(value, text)}"
    if text.startswith("!"):
        return "!" + _key(text[1:].strip(), text)
    if _KEY.fullmatch(text):
        return _key(text, text)
    raise SelectorError(f"cannot parse {text!r} in label selector (supported: {_FORMS})")


def _key(key: str, requirement: str) -> str:
    prefix, _, name = key.rpartition("/")
    if not _KEY.fullmatch(key) or len(prefix) > 253 or len(name) > 63:
        raise SelectorError(
            f"invalid label key {key!r} in {requirement!r}: a name of at most 63 characters "
            "(letters, digits, '-', '_', '.'), optionally after a DNS subdomain and '/'"
        )
    return key


def _value(value: str, requirement: str) -> str:
    if not _VALUE.fullmatch(value) or len(value) > 63:
        raise SelectorError(
            f"invalid label value {value!r} in {requirement!r}: at most 63 characters "
            "(letters, digits, '-', '_', '.'), starting and ending with a letter or digit"
        )
    return value
