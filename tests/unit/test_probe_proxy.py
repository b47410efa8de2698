"""The probe session's egress proxy: read once, and the same choices as aiohttp's trust_env."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from modelroute.probing.proxy import DIRECT, EnvProxies
from modelroute.probing.session import new_session, proxy_route

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*PROXY_VARS, "REQUEST_METHOD", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", "/nonexistent/netrc")


def _via(base_url: str) -> str | None:
    route = EnvProxies().route(base_url)
    return str(route.proxy) if route.proxy is not None else None


def _aiohttp_via(base_url: str) -> str | None:
    """What aiohttp's trust_env chose (the behaviour EnvProxies keeps)."""
    try:
        proxy, _ = get_env_proxy_for_url(URL(base_url))
    except LookupError:
        return None
    return str(proxy)


CASES = [
    # NO_PROXY, probe base URL, goes through the proxy
    ("", "https://api.openai.com", True),
    ("*", "https://api.openai.com", False),
    ("api.openai.com", "https://api.openai.com", False),
    ("openai.com", "https://api.openai.com", False),  # a suffix
    (".openai.com", "https://api.openai.com", False),  # a suffix with its dot
    ("penai.com", "https://api.openai.com", True),  # a suffix only at a dot
    (".svc,.cluster.local", "http://vllm.ai.svc:8000", False),
    (".svc, .cluster.local", "https://m.ai.svc.cluster.local:8443", False),
    ("API.OpenAI.com", "https://api.openai.com", False),  # names are case-insensitive
    ("127.0.0.1", "http://127.0.0.1:8080", False),  # an exact IP address
    ("127.0.0.2", "http://127.0.0.1:8080", True),
    ("10.0.0.0/8", "http://10.1.2.3:8080", True),  # no CIDR ranges (documented)
    ("localhost", "http://localhost:8080", False),
    ("other.example", "https://api.openai.com", True),
]


@pytest.mark.parametrize(("no_proxy", "url", "proxied"), CASES)
def test_no_proxy_forms_match_the_standard_library_as_aiohttp_applied_it(
    monkeypatch: pytest.MonkeyPatch, no_proxy: str, url: str, proxied: bool
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://egress.infra:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://plain.infra:3128")
    if no_proxy:
        monkeypatch.setenv("NO_PROXY", no_proxy)
    expected = _aiohttp_via(url)
    assert _via(url) == expected
    assert (expected is not None) == proxied


def test_a_host_port_entry_bypasses_that_port_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://plain.infra:3128")
    monkeypatch.setenv("NO_PROXY", "metrics.local:9090")
    assert _via("http://metrics.local:9090") is None
    assert _via("http://metrics.local:8080") == "http://plain.infra:3128"


def test_each_scheme_takes_its_own_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://egress.infra:3128")
    assert _via("https://api.openai.com") == "http://egress.infra:3128"
    assert _via("http://api.openai.com") is None  # no HTTP_PROXY


def test_lower_case_variables_win_over_upper_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://upper.infra:3128")
    monkeypatch.setenv("https_proxy", "http://lower.infra:3128")
    monkeypatch.setenv("no_proxy", "openai.com")
    monkeypatch.setenv("NO_PROXY", "anthropic.com")
    assert _via("https://api.openai.com") is None
    assert _via("https://api.anthropic.com") == "http://lower.infra:3128"


def test_proxy_credentials_go_to_the_proxy_not_into_its_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://probe:s3cret@egress.infra:3128")
    route = EnvProxies().route("https://api.openai.com")
    assert str(route.proxy) == "http://egress.infra:3128"
    assert route.auth is not None
    assert (route.auth.login, route.auth.password) == ("probe", "s3cret")


def test_proxy_credentials_from_netrc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine egress.infra login probe password fromnetrc\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HTTPS_PROXY", "http://egress.infra:3128")
    route = EnvProxies().route("https://api.openai.com")
    assert route.auth is not None
    assert (route.auth.login, route.auth.password) == ("probe", "fromnetrc")


def test_an_https_proxy_is_ignored_as_aiohttp_did(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "https://tls-proxy.infra:3129")
    assert EnvProxies().route("https://api.openai.com") is DIRECT
    assert not EnvProxies()


async def test_settings_are_read_when_the_session_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://egress.infra:3128")
    session = new_session(connection_limit=0, connection_limit_per_host=5)
    try:
        monkeypatch.setenv("HTTPS_PROXY", "http://changed.infra:3128")
        route = proxy_route(session, "https://api.openai.com")
        assert str(route.proxy) == "http://egress.infra:3128"
        assert not session.trust_env  # no per-request environment or .netrc lookups
    finally:
        await session.close()


async def test_a_session_made_elsewhere_goes_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://egress.infra:3128")
    async with aiohttp.ClientSession() as session:
        assert proxy_route(session, "https://api.openai.com") is DIRECT
