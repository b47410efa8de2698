"""Name the failure when a backend gave no answer at all (DNS, connect, TLS, a cut body).

:mod:`modelroute.probing.prober` catches whatever the transport raised and asks
:func:`error_message` for the status message.  It is kept apart from the probes themselves
because it is a table of aiohttp and OS exception types, not probe logic, and because its one
rule is easy to check here: the message names the kind of failure and the OS reason
(``os.strerror`` where there is an errno), not the exception's own text, which embeds
addresses, ports and URLs that change between attempts or may carry credentials.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any, Final

import aiohttp

from modelroute.core.types import ProbeFailure
from modelroute.probing.answers import DETAIL_CHARS

__all__ = ["error_message", "error_reason"]


def _os_reason(err: OSError | None) -> str:
    # os.strerror(errno) rather than str(err): asyncio's text embeds the address tuple and
    # aiohttp's repr may carry details that change between attempts.
    if err is None:
        return "unknown error"
    if err.errno is not None and err.errno > 0 and not isinstance(err, socket.gaierror):
        return os.strerror(err.errno)
    return err.strerror or str(err)[:DETAIL_CHARS] or type(err).__name__


def _cert_reason(exc: aiohttp.ClientConnectorCertificateError) -> str:
    reason = getattr(exc.certificate_error, "verify_message", None)
    return reason if isinstance(reason, str) else type(exc.certificate_error).__name__


# Most specific first; the first matching class describes the failure.
_ERROR_MESSAGES: Final[tuple[tuple[type[Exception], Callable[[Any], str]], ...]] = (
    (aiohttp.InvalidURL, lambda e: "invalid URL"),  # never echo it: it may carry userinfo
    (
        aiohttp.ClientConnectorCertificateError,
        lambda e: f"TLS certificate verification failed: {_cert_reason(e)}",
    ),
    (aiohttp.ClientSSLError, lambda e: f"TLS handshake failed: {_os_reason(e.os_error)}"),
    (aiohttp.ClientConnectorDNSError, lambda e: f"DNS lookup failed: {_os_reason(e.os_error)}"),
    (aiohttp.ClientConnectorError, lambda e: f"connection failed: {_os_reason(e.os_error)}"),
    (aiohttp.ServerDisconnectedError, lambda e: "connection failed: server disconnected"),
    # Before its base class: the egress proxy (HTTPS_PROXY) refused the CONNECT, e.g. 407.
    # Its URL is never echoed: it may carry credentials.
    (aiohttp.ClientHttpProxyError, lambda e: f"egress proxy refused: {e.status} {e.message}"),
    # Probes never raise for status, so this is aiohttp failing to parse the answer's head.
    (
        aiohttp.ClientResponseError,
        lambda e: "not an HTTP answer: bad status line or headers over 8 KiB",
    ),
    (
        aiohttp.ClientPayloadError,
        lambda e: "connection lost mid-answer: incomplete response body",
    ),
    (socket.gaierror, lambda e: f"DNS lookup failed: {_os_reason(e)}"),
    (OSError, lambda e: f"connection failed: {_os_reason(e)}"),
    (aiohttp.ClientError, lambda e: f"request failed: {type(e).__name__}"),
)


def error_message(exc: Exception) -> str:
    """A stable status message for ``exc``, raised while a probe sent or read its request."""
    for cls, describe in _ERROR_MESSAGES:
        if isinstance(exc, cls):
            return describe(exc)
    return f"probe failed: {type(exc).__name__}"


def error_reason(exc: Exception) -> ProbeFailure:
    """The failure class of ``exc``: something answered, but not HTTP, is ``BadResponse``."""
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return ProbeFailure.UNAVAILABLE  # the way to the backend, not the backend, failed
    if isinstance(exc, aiohttp.ClientResponseError):
        return ProbeFailure.BAD_RESPONSE
    return ProbeFailure.UNAVAILABLE
