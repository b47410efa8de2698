"""The official ``openai`` and ``anthropic`` SDKs as clients of the fakes, on loopback.

If the vendors' own clients parse a fake's answers -- successes into their typed objects,
errors into their own exception classes with the code, param, type and retry-after read
from the wire -- the fakes speak the dialects faithfully enough to test probes against.
Both SDKs are dev dependencies only.  Retries are off (``max_retries=0``) so every fault
surfaces on the first request.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
import pytest

from tests.fakes import Dialect, FakeBackendThread, Fault

KEY = "sk-fake-sdk-0123456789"
PING = [{"role": "user", "content": "ping"}]
AZURE_VERSION = "2024-10-21"
SONNET = "claude-sonnet-4-5-20250929"
HAIKU = "claude-haiku-4-5-20251001"

OPENAI_MODELS = ("gpt-4o", "o3-mini")
AZURE_DEPLOYMENTS = ("gpt-4o-prod", "o4-mini")
ANTHROPIC_MODELS = (SONNET, HAIKU)


@pytest.fixture(autouse=True)
def _no_sdk_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDKs read keys, base URLs, extra headers and proxies from the environment; a
    # developer's shell must not change what reaches the fakes (or send it elsewhere).
    prefixes = ("OPENAI_", "AZURE_OPENAI_", "ANTHROPIC_")
    proxies = {"http_proxy", "https_proxy", "all_proxy"}
    for name in list(os.environ):
        if name.startswith(prefixes) or name.lower() in proxies:
            monkeypatch.delenv(name)


def _fake(models: tuple[str, ...], dialect: Dialect) -> FakeBackendThread:
    return FakeBackendThread(models, api_key=KEY, name="acme", dialect=dialect)


@pytest.fixture
def openai_fake() -> Iterator[FakeBackendThread]:
    with _fake(OPENAI_MODELS, Dialect.OPENAI) as fake:
        yield fake


@pytest.fixture
def azure_fake() -> Iterator[FakeBackendThread]:
    with _fake(AZURE_DEPLOYMENTS, Dialect.AZURE_OPENAI) as fake:
        yield fake


@pytest.fixture
def anthropic_fake() -> Iterator[FakeBackendThread]:
    with _fake(ANTHROPIC_MODELS, Dialect.ANTHROPIC) as fake:
        yield fake


def openai_client(fake: FakeBackendThread, **kw: Any) -> openai.OpenAI:
    options: dict[str, Any] = {"api_key": KEY, "max_retries": 0, "timeout": 5.0} | kw
    return openai.OpenAI(base_url=f"{fake.url}/v1", **options)


def azure_client(fake: FakeBackendThread, **kw: Any) -> openai.AzureOpenAI:
    options: dict[str, Any] = {
        "api_key": KEY,
        "api_version": AZURE_VERSION,
        "max_retries": 0,
        "timeout": 5.0,
    } | kw
    return openai.AzureOpenAI(azure_endpoint=fake.url, **options)


def anthropic_client(fake: FakeBackendThread, **kw: Any) -> anthropic.Anthropic:
    options: dict[str, Any] = {"api_key": KEY, "max_retries": 0, "timeout": 5.0} | kw
    return anthropic.Anthropic(base_url=fake.url, **options)


def _backend(fake: FakeBackendThread) -> Any:
    assert fake.backend is not None
    return fake.backend


# -- OpenAI -----------------------------------------------------------------------------------


def test_openai_models_and_chat(openai_fake: FakeBackendThread) -> None:
    with openai_client(openai_fake) as client:
        models = client.models.list()
        assert [m.id for m in models] == list(OPENAI_MODELS)
        assert all(m.object == "model" and m.owned_by == "acme" for m in models)

        done = client.chat.completions.create(
            model="gpt-4o", messages=PING, max_tokens=1, temperature=0
        )
    assert done.object == "chat.completion"
    assert done.model == "gpt-4o"
    assert done.choices[0].message.content == "pong"
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None and done.usage.total_tokens == done.usage.prompt_tokens + 1
    assert _backend(openai_fake).last_headers["Authorization"] == f"Bearer {KEY}"


def test_openai_reasoning_model_takes_max_completion_tokens(
    openai_fake: FakeBackendThread,
) -> None:
    with openai_client(openai_fake) as client:
        done = client.chat.completions.create(
            model="o3-mini", messages=PING, max_completion_tokens=1
        )
        assert done.choices[0].message.content == "pong"

        with pytest.raises(openai.BadRequestError) as max_tokens:
            client.chat.completions.create(model="o3-mini", messages=PING, max_tokens=1)
        with pytest.raises(openai.BadRequestError) as temperature:
            client.chat.completions.create(
                model="o3-mini",
                messages=PING,
                max_completion_tokens=1,
                temperature=0.2,
            )
    assert max_tokens.value.status_code == 400
    assert max_tokens.value.code == "unsupported_parameter"
    assert max_tokens.value.param == "max_tokens"
    assert max_tokens.value.type == "invalid_request_error"
    assert "Use 'max_completion_tokens' instead." in max_tokens.value.message
    assert temperature.value.code == "unsupported_value"
    assert temperature.value.param == "temperature"
    assert "Only the default (1) value is supported." in temperature.value.message


def test_openai_wrong_key(openai_fake: FakeBackendThread) -> None:
    with (
        openai_client(openai_fake, api_key="sk-wrong") as client,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        client.models.list()
    assert caught.value.code == "invalid_api_key"
    assert "sk-wrong" not in str(caught.value)


# -- Azure OpenAI -----------------------------------------------------------------------------


def test_azure_models_and_chat(azure_fake: FakeBackendThread) -> None:
    with azure_client(azure_fake) as client:
        # The SDK supports models.list() for Azure: GET /openai/models?api-version=...
        assert [m.id for m in client.models.list()] == list(AZURE_DEPLOYMENTS)
        done = client.chat.completions.create(model="gpt-4o-prod", messages=PING, max_tokens=1)
    assert done.model == "gpt-4o-prod"
    assert done.choices[0].message.content == "pong"
    backend = _backend(azure_fake)
    assert backend.requests_by_path["/openai/deployments/gpt-4o-prod/chat/completions"] == 1
    assert backend.last_headers["api-key"] == KEY


def test_azure_reasoning_deployment_and_gateway_errors(azure_fake: FakeBackendThread) -> None:
    with azure_client(azure_fake) as client:
        done = client.chat.completions.create(
            model="o4-mini", messages=PING, max_completion_tokens=1
        )
        assert done.choices[0].message.content == "pong"
        with pytest.raises(openai.BadRequestError) as max_tokens:
            client.chat.completions.create(model="o4-mini", messages=PING, max_tokens=1)
        with pytest.raises(openai.NotFoundError) as no_deployment:
            client.chat.completions.create(model="nope", messages=PING)
    assert (max_tokens.value.code, max_tokens.value.param) == (
        "unsupported_parameter",
        "max_tokens",
    )
    assert no_deployment.value.code == "DeploymentNotFound"

    with (
        azure_client(azure_fake, api_version="2099-01-01") as client,
        pytest.raises(openai.BadRequestError) as version,
    ):
        client.models.list()
    assert version.value.code == "BadRequest"
    assert version.value.body == {"code": "BadRequest", "message": "API version not supported"}

    with (
        azure_client(azure_fake, api_key="wrong-key") as client,
        pytest.raises(openai.AuthenticationError) as denied,
    ):
        client.models.list()
    assert denied.value.code == "401"
    assert "wrong-key" not in str(denied.value)


# -- Anthropic --------------------------------------------------------------------------------


def test_anthropic_models_and_messages(anthropic_fake: FakeBackendThread) -> None:
    with anthropic_client(anthropic_fake) as client:
        page = client.models.list()
        assert [m.id for m in page.data] == list(ANTHROPIC_MODELS)
        assert page.data[0].type == "model"
        assert page.data[0].display_name == "Claude Sonnet 4.5"
        assert page.data[0].created_at.year == 2025  # parsed from RFC 3339
        # One model a page: the SDK follows has_more/last_id through both.
        assert [m.id for m in client.models.list(limit=1)] == list(ANTHROPIC_MODELS)
        assert client.models.retrieve("claude-sonnet-4-5").id == SONNET  # an alias

        message = client.messages.create(model="claude-sonnet-4-5", max_tokens=1, messages=PING)
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == SONNET
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [("text", "pong")]
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert message.usage.input_tokens == 1
    assert message.usage.output_tokens == 1
    headers = _backend(anthropic_fake).last_headers
    assert headers["Authorization"] == f"Bearer {KEY}"  # how the 2.x SDKs send an API key
    assert headers["anthropic-version"] == "2026-10-21"  # the SDK's, accepted by the fake


def test_anthropic_request_errors(anthropic_fake: FakeBackendThread) -> None:
    with (
        anthropic_client(anthropic_fake) as client,
        pytest.raises(anthropic.NotFoundError) as unknown,
    ):
        client.messages.create(model="claude-nope", max_tokens=1, messages=PING)
    assert unknown.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "model: claude-nope"},
        "request_id": unknown.value.request_id,
    }
    assert unknown.value.request_id is not None and unknown.value.request_id.startswith("req_")

    with (
        anthropic_client(anthropic_fake, api_key="sk-ant-wrong") as client,
        pytest.raises(anthropic.AuthenticationError) as denied,
    ):
        client.models.list()
    assert _error_type(denied.value) == "authentication_error"
    assert "sk-ant-wrong" not in str(denied.value)

    odd_version = {"anthropic-version": "1999-01-01"}
    with (
        anthropic_client(anthropic_fake, default_headers=odd_version) as client,
        pytest.raises(anthropic.BadRequestError) as version,
    ):
        client.models.list()
    assert _error_type(version.value) == "invalid_request_error"
    assert "is not a valid version" in str(version.value)


def _error_type(exc: anthropic.APIStatusError) -> Any:
    assert isinstance(exc.body, dict)
    return exc.body["error"]["type"]


# -- every fault, in every dialect, as each SDK's own exception --------------------------------


@dataclass(frozen=True)
class Vendor:
    """One dialect: its fake's models, a client factory, one chat call and the SDK module."""

    dialect: Dialect
    models: tuple[str, ...]
    client: Callable[..., Any]
    chat: Callable[[Any], Any]
    sdk: Any


VENDORS = {
    Dialect.OPENAI: Vendor(
        Dialect.OPENAI,
        OPENAI_MODELS,
        openai_client,
        lambda c: c.chat.completions.create(model="gpt-4o", messages=PING, max_tokens=1),
        openai,
    ),
    Dialect.AZURE_OPENAI: Vendor(
        Dialect.AZURE_OPENAI,
        AZURE_DEPLOYMENTS,
        azure_client,
        lambda c: c.chat.completions.create(model="gpt-4o-prod", messages=PING, max_tokens=1),
        openai,
    ),
    Dialect.ANTHROPIC: Vendor(
        Dialect.ANTHROPIC,
        ANTHROPIC_MODELS,
        anthropic_client,
        lambda c: c.messages.create(model=SONNET, max_tokens=1, messages=PING),
        anthropic,
    ),
}


@pytest.fixture(params=list(VENDORS), ids=str)
def vendor(request: pytest.FixtureRequest) -> Iterator[tuple[Vendor, FakeBackendThread]]:
    chosen = VENDORS[request.param]
    with _fake(chosen.models, chosen.dialect) as fake:
        yield chosen, fake


def _error_code(exc: Any) -> Any:
    """What identifies the error in the dialect's body: OpenAI code, Azure code, Anthropic type."""
    body = exc.body
    if isinstance(exc, anthropic.APIStatusError):
        return body["error"]["type"]
    return body.get("code") or body.get("type")


@pytest.mark.parametrize(
    ("fault", "exception", "statuses", "codes"),
    [
        (
            Fault.OUTAGE,
            "InternalServerError",
            (503, 503, 529),
            ("service_unavailable", "ServiceUnavailable", "overloaded_error"),
        ),
        (
            Fault.SERVER_ERROR,
            "InternalServerError",
            (500, 500, 500),
            ("server_error", "InternalServerError", "api_error"),
        ),
        (
            Fault.RATE_LIMITED,
            "RateLimitError",
            (429, 429, 429),
            ("rate_limit_exceeded", "429", "rate_limit_error"),
        ),
        (
            Fault.WRONG_MODELS,
            "NotFoundError",
            (404, 404, 404),
            ("model_not_found", "DeploymentNotFound", "not_found_error"),
        ),
    ],
    ids=["outage", "server_error", "rate_limited", "wrong_models"],
)
def test_fault_is_the_sdk_exception(
    vendor: tuple[Vendor, FakeBackendThread],
    fault: Fault,
    exception: str,
    statuses: tuple[int, int, int],
    codes: tuple[str, str, str],
) -> None:
    chosen, fake = vendor
    index = list(VENDORS).index(chosen.dialect)
    fake.set_fault(fault, retry_after=7)
    with chosen.client(fake) as client, pytest.raises(getattr(chosen.sdk, exception)) as caught:
        chosen.chat(client)
    assert caught.value.status_code == statuses[index]
    assert _error_code(caught.value) == codes[index]
    if fault is Fault.RATE_LIMITED:
        assert caught.value.response.headers["retry-after"] == "7"
    if statuses[index] == 529:
        assert isinstance(caught.value, anthropic.OverloadedError)

    fake.clear_fault()
    with chosen.client(fake) as client:
        chosen.chat(client)  # and back to normal


def test_refused_is_a_connection_error(vendor: tuple[Vendor, FakeBackendThread]) -> None:
    chosen, fake = vendor
    fake.set_fault(Fault.REFUSED)
    with chosen.client(fake) as client, pytest.raises(chosen.sdk.APIConnectionError) as caught:
        chosen.chat(client)
    assert not isinstance(caught.value, chosen.sdk.APITimeoutError)


def test_hang_is_a_timeout(vendor: tuple[Vendor, FakeBackendThread]) -> None:
    chosen, fake = vendor
    fake.set_fault(Fault.HANG)
    started = time.monotonic()
    with chosen.client(fake, timeout=0.3) as client, pytest.raises(chosen.sdk.APITimeoutError):
        chosen.chat(client)
    assert time.monotonic() - started < 3


def test_slow_still_answers(vendor: tuple[Vendor, FakeBackendThread]) -> None:
    chosen, fake = vendor
    fake.set_fault(Fault.SLOW, delay=0.2)
    started = time.monotonic()
    with chosen.client(fake) as client:
        assert chosen.chat(client) is not None
    assert time.monotonic() - started >= 0.19


def test_garbage_bodies(vendor: tuple[Vendor, FakeBackendThread]) -> None:
    chosen, fake = vendor
    fake.set_fault(Fault.MALFORMED_JSON)
    # Neither SDK wraps a JSON decoding error in its own exception type.
    with chosen.client(fake) as client, pytest.raises(json.JSONDecodeError):
        chosen.chat(client)
    fake.set_fault(Fault.HTML_PAGE)
    strict = chosen.client(fake, _strict_response_validation=True)
    with strict as client, pytest.raises(chosen.sdk.APIResponseValidationError):
        chosen.chat(client)
