"""probing.answers: backend-provided text enters messages as valid text."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from modelroute.core.types import ProbeFailure
from modelroute.probing.answers import BadAnswer, Reply, missing_model, require_success


def _now() -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC)


def test_a_lone_surrogate_in_a_vendor_error_becomes_valid_text() -> None:
    # JSON escapes half an emoji as \ud83d: json.loads gives a lone surrogate back.
    body = b'{"error": {"message": "overloaded \\ud83d"}}'
    reply = Reply(status=529, content_type="application/json", body=body, retry_after=None)
    with pytest.raises(BadAnswer) as raised:
        require_success(reply, "/v1/messages", redirect_ok=False, secrets=(), now=_now)
    assert raised.value.reason is ProbeFailure.UNAVAILABLE
    assert raised.value.message == "HTTP 529 from /v1/messages: overloaded ?"
    raised.value.message.encode("utf-8")  # strict: would raise on a surrogate


def test_a_lone_surrogate_in_a_served_model_id_becomes_valid_text() -> None:
    failure = missing_model("gpt-4o", ["gpt-\udc00"], "/v1/models")
    assert failure.message == "model gpt-4o not listed by /v1/models (serves: gpt-?)"
