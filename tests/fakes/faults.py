"""The fault switches shared by every dialect of the fake backends.

A fault is dialect-neutral (``OUTAGE`` means "the vendor is down"); each dialect answers it in
its own wire format (see the table in :mod:`tests.fakes.openai_backend`).  The bodies of the
non-JSON faults are the same in every dialect: a captive portal does not care which API the
client meant to reach.
"""

from __future__ import annotations

import enum

__all__ = ["CONTROL_PREFIX", "HTML_PAGE", "MALFORMED_BODY", "OTHER_MODEL", "Fault"]

#: Paths under this prefix are the control plane of the fake, never subject to faults.
CONTROL_PREFIX = "/__control/"

#: The only model advertised under WRONG_MODELS; it must never be a configured one.
OTHER_MODEL = "some-other-model"

# Truncated mid-array on purpose: looks like the start of a models list, so a client that
# only sniffs the first bytes or the content-type is fooled, but a JSON parser is not.
MALFORMED_BODY = '{"object": "list", "data": ['

HTML_PAGE = """<!DOCTYPE html>
<html>
<head><title>Sign in - Guest Wi-Fi</title></head>
<body>
<h1>Welcome to Guest Wi-Fi</h1>
<form method="post" action="/login">
<label>Username <input name="username"></label>
<label>Password <input name="password" type="password"></label>
<button type="submit">Sign in</button>
</form>
</body>
</html>
"""


class Fault(enum.StrEnum):
    """A failure mode the fake backend can simulate.

    The values are the lower-case names accepted by ``POST /__control/fault``.  A StrEnum
    (a ``str`` and an ``Enum``) so members compare equal to, and format as, those names.
    The status codes below are the OpenAI dialect's; see the dialect modules for the others.
    """

    NONE = "none"
    #: 503 JSON error on every request (Anthropic: 529 ``overloaded_error``).
    OUTAGE = "outage"
    #: Listening socket closed: new connects get ECONNREFUSED. Clearing re-binds the port.
    REFUSED = "refused"
    #: 500 JSON error on every request.
    SERVER_ERROR = "server_error"
    #: 429 JSON error with a ``Retry-After`` header (``retry_after`` seconds).
    RATE_LIMITED = "rate_limited"
    #: Requests are held open until the fault is cleared or the backend stops.
    HANG = "hang"
    #: Requests are answered normally after ``delay`` seconds.
    SLOW = "slow"
    #: 200 ``application/json`` whose body is not valid JSON.
    MALFORMED_JSON = "malformed_json"
    #: 200 ``text/html`` captive-portal style login page.
    HTML_PAGE = "html_page"
    #: The models list shows only an unrelated model; chat with a configured one is a 404.
    WRONG_MODELS = "wrong_models"
    #: The models list is normal, but every generation request (a POST: chat completions,
    #: messages) is a 500: a backend that lists its model and cannot generate.
    CANNOT_GENERATE = "cannot_generate"
