"""Tests for the command line and for the kopf settings derived from it."""

from __future__ import annotations

import collections.abc
import dataclasses
import itertools
import json
import logging
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import kopf
import pytest

from modelroute import logs, routing
from modelroute import version as version_module
from modelroute.cli import parse_args
from modelroute.control import runtime
from modelroute.settings import Settings, apply_to_kopf

REPO = Path(__file__).resolve().parents[2]


def test_defaults_match_settings() -> None:
    settings, args = parse_args([])
    assert settings == Settings()
    assert settings.clusterwide
    assert args.kubeconfig is None


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["-n", "ai"], ("ai",), id="one"),
        pytest.param(["--namespace", "b", "-n", "a"], ("b", "a"), id="keeps-order"),
        pytest.param(["-n", "a", "-n", "b", "--namespace", "a"], ("a", "b"), id="dedups"),
    ],
)
def test_namespaces(argv: list[str], expected: tuple[str, ...]) -> None:
    settings, _ = parse_args(argv)
    assert settings.namespaces == expected
    assert not settings.clusterwide


@pytest.mark.parametrize(
    ("argv", "field", "value"),
    [
        pytest.param(["--metrics-port", "9100"], "metrics_port", 9100, id="metrics-port"),
        pytest.param(["--metrics-port", "0"], "metrics_port", 0, id="metrics-disabled"),
        pytest.param(["--health-port", "65535"], "health_port", 65535, id="health-port"),
        pytest.param(["--bind-address", "127.0.0.1"], "bind_address", "127.0.0.1", id="bind"),
        pytest.param(
            ["--max-connections-per-host", "1"],
            "max_connections_per_host",
            1,
            id="max-connections-per-host",
        ),
        pytest.param(["--leader-election"], "leader_election", True, id="leader-election"),
        pytest.param(["--log-format", "text"], "log_format", "text", id="log-format"),
        pytest.param(["--log-level", "DEBUG"], "log_level", "DEBUG", id="log-level"),
    ],
)
def test_flags(argv: list[str], field: str, value: object) -> None:
    settings, _ = parse_args(argv)
    assert getattr(settings, field) == value
    assert settings == dataclasses.replace(Settings(), **{field: value})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("Service", ("Service",), id="one"),
        pytest.param("Service,HTTPRoute", ("Service", "HTTPRoute"), id="two"),
        pytest.param(" HTTPRoute , Service ,", ("HTTPRoute", "Service"), id="spaces"),
        pytest.param("Service,Service", ("Service",), id="dedups"),
    ],
)
def test_routing_drivers(value: str, expected: tuple[str, ...]) -> None:
    assert "HTTPRoute" in routing.names(), "the HTTPRoute driver is not registered yet"
    settings, _ = parse_args(["--routing-drivers", value])
    assert settings.routing_drivers == expected
    assert settings == dataclasses.replace(Settings(), routing_drivers=expected)


def test_routing_drivers_default_to_every_registered_driver() -> None:
    # Empty means all of them: the runtime resolves it against the registry.
    assert parse_args([])[0].routing_drivers == ()
    assert Settings().routing_drivers == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("Service,Nope", "unknown routing driver 'Nope'", id="unknown"),
        pytest.param("service", "unknown routing driver 'service'", id="case-sensitive"),
        pytest.param("", "--routing-drivers needs at least one driver", id="empty"),
        pytest.param(",", "--routing-drivers needs at least one driver", id="only-commas"),
    ],
)
def test_bad_routing_drivers_name_the_available_ones(
    value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        parse_args(["--routing-drivers", value])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert f"(available: {', '.join(routing.names())})" in err


def test_kubeconfig_is_passed_through() -> None:
    _, args = parse_args(["--kubeconfig", "/tmp/kubeconfig"])
    assert args.kubeconfig == "/tmp/kubeconfig"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--metrics-port", "70000"], "port 70000 is out of range", id="too-high"),
        pytest.param(["--health-port", "-1"], "port -1 is out of range", id="negative"),
        pytest.param(["--metrics-port", "http"], "invalid int value", id="not-a-number"),
        pytest.param(
            ["--max-connections-per-host", "0"],
            "--max-connections-per-host must be at least 1",
            id="no-connections",
        ),
        pytest.param(
            ["--metrics-port", "9000", "--health-port", "9000"],
            "--metrics-port and --health-port are both 9000",
            id="same-port",
        ),
        pytest.param(["--log-format", "xml"], "invalid choice", id="log-format"),
        pytest.param(["--log-level", "TRACE"], "invalid choice", id="log-level"),
        pytest.param(["--unknown"], "unrecognized arguments", id="unknown-flag"),
    ],
)
def test_bad_arguments_exit_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        parse_args(argv)
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("usage: modelroute-operator")


def kopf_settings(settings: Settings) -> kopf.OperatorSettings:
    target = kopf.OperatorSettings()
    apply_to_kopf(settings, target)
    return target


def test_apply_to_kopf_defaults() -> None:
    ks = kopf_settings(Settings())
    assert ks.scanning.disabled is True
    assert ks.posting.level == logging.WARNING
    assert ks.posting.reporting_component == "modelroute-operator"
    assert ks.watching.server_timeout == 300
    assert ks.watching.client_timeout == 330
    assert ks.watching.client_timeout > ks.watching.server_timeout
    # kopf's LIST of every route may take long at scale; connecting may not.
    assert (ks.networking.request_timeout, ks.networking.connect_timeout) == (300.0, 30.0)
    assert ks.peering.standalone is True
    assert ks.peering.mandatory is False


def test_kopf_lists_model_routes_in_pages() -> None:
    # Unpaged, kopf's LIST of 10,000 routes was one response the API server built for about
    # 5 s of a start-up, and 100 MiB more RSS at once.
    assert kopf_settings(Settings()).watching.chunk_size == 500


def test_kopf_never_gives_up_retrying_its_requests() -> None:
    # kopf raises after its last backoff, and for its watch of ModelRoutes that stopped the
    # operator (a 5xx of an API server still starting, after an outage). kopf counts attempts
    # only of a sized iterable, and chains None (give up) after the last delay it yields.
    backoffs = kopf_settings(Settings()).networking.error_backoffs
    assert isinstance(backoffs, collections.abc.Iterable)
    assert not isinstance(backoffs, collections.abc.Sized)
    for _ in range(2):  # afresh for every request
        delays = list(itertools.islice(iter(backoffs), 1000))
        assert delays[:8] == [1, 1, 2, 3, 5, 8, 13, 21]
        assert len(delays) == 1000 and set(delays[8:]) == {21}


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param(Settings(), id="single-replica"),
        pytest.param(Settings(leader_election=True), id="leader-election"),
        pytest.param(Settings(leader_election=True, namespaces=("ai",)), id="namespaced"),
    ],
)
def test_kopf_never_uses_its_peering(settings: Settings) -> None:
    # kopf's peering pauses only kopf's handlers; leader election is the operator's own Lease.
    ks = kopf_settings(settings)
    assert ks.peering.standalone is True
    assert ks.peering.mandatory is False


def test_apply_to_kopf_follows_settings() -> None:
    settings = Settings(
        kopf_posting_level=logging.ERROR,
        watch_server_timeout_seconds=60,
        watch_client_timeout_seconds=90,
        api_timeout_seconds=7.5,
        kopf_request_timeout_seconds=120.0,
        shutdown_grace_seconds=2.0,
        field_manager="custom",
    )
    ks = kopf_settings(settings)
    assert ks.posting.level == logging.ERROR
    assert ks.posting.reporting_component == "custom"
    assert (ks.watching.server_timeout, ks.watching.client_timeout) == (60, 90)
    assert (ks.networking.request_timeout, ks.networking.connect_timeout) == (120.0, 7.5)
    assert ks.process.ultimate_exiting_timeout == 2.0


def test_leader_election_flags() -> None:
    settings, _ = parse_args(
        ["--leader-election", "--leader-election-namespace", "ops", "--leader-election-lease", "mr"]
    )
    assert settings.leader_election is True
    assert (settings.leader_election_namespace, settings.leader_election_lease) == ("ops", "mr")
    defaults, _ = parse_args([])
    assert defaults.leader_election is False
    assert defaults.leader_election_namespace == ""  # resolved from POD_NAMESPACE at start


# --- version ---------------------------------------------------------------------------------


def _pyproject_version() -> str:
    with (REPO / "pyproject.toml").open("rb") as file:
        value = tomllib.load(file)["project"]["version"]
    assert isinstance(value, str)
    return value


def test_version_flag_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        parse_args(["--version"])
    assert raised.value.code == 0
    out = capsys.readouterr().out
    assert out == f"modelroute-operator {_pyproject_version()}\n"


def test_version_flag_through_the_installed_command() -> None:
    # The console script .venv/bin/modelroute-operator, as an admin runs it.
    command = Path(sys.executable).with_name("modelroute-operator")
    assert command.exists(), f"{command} is not installed (make install)"
    done = subprocess.run(
        [str(command), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"modelroute-operator {_pyproject_version()}\n"


def test_version_of_the_installed_distribution() -> None:
    assert metadata.version(version_module.DISTRIBUTION) == _pyproject_version()
    assert version_module.version() == _pyproject_version()


def test_version_falls_back_to_pyproject_when_not_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(version_module.metadata, "version", not_installed)
    assert version_module.PYPROJECT == REPO / "pyproject.toml"
    assert version_module.version() == _pyproject_version()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param('[project]\nname = "x"\nversion = "1.2.3"\n', "1.2.3", id="version"),
        pytest.param('[project]\nname = "x"\n', "0+unknown", id="no-version"),
        pytest.param("[project\n", "0+unknown", id="not-toml"),
        pytest.param(None, "0+unknown", id="missing"),
    ],
)
def test_pyproject_version(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "pyproject.toml"
    if content is not None:
        path.write_text(content)
    assert version_module.pyproject_version(path) == expected


def test_version_is_logged_once_at_start_up(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="modelroute.control.runtime")
    runtime.log_started(Settings(namespaces=("ai",)))
    started = [r for r in caplog.records if r.getMessage().startswith("operator started")]
    assert len(started) == 1
    record = started[0]
    assert record.getMessage() == f"operator started, version {_pyproject_version()}"
    # The JSON log carries it as a field of its own, beside where the operator listens.
    entry = json.loads(logs.JsonFormatter().format(record))
    assert entry["version"] == _pyproject_version()
    assert entry["namespaces"] == ["ai"]
    assert (entry["metrics_port"], entry["health_port"]) == (8080, 8081)


def test_status_defer_seconds_is_a_flag_with_the_settings_default() -> None:
    assert parse_args([])[0].status_defer_seconds == 30.0
    assert parse_args(["--status-defer-seconds", "2.5"])[0].status_defer_seconds == 2.5


def test_a_negative_status_deferral_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--status-defer-seconds", "-1"])
    assert "--status-defer-seconds must be at least 0" in capsys.readouterr().err


def test_first_status_hold_seconds_is_a_flag_off_by_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert parse_args([])[0].first_status_hold_seconds == 0.0
    assert parse_args(["--first-status-hold-seconds", "5"])[0].first_status_hold_seconds == 5.0
    with pytest.raises(SystemExit):
        parse_args(["--first-status-hold-seconds", "-1"])
    assert "--first-status-hold-seconds must be at least 0" in capsys.readouterr().err


def test_api_max_in_flight_is_a_flag_of_at_least_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_args([])[0].api_max_in_flight == 50
    assert parse_args(["--api-max-in-flight", "8"])[0].api_max_in_flight == 8
    with pytest.raises(SystemExit):
        parse_args(["--api-max-in-flight", "0"])
    assert "--api-max-in-flight must be at least 1" in capsys.readouterr().err


def test_api_routing_extra_in_flight_is_a_flag_of_at_least_zero(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert parse_args([])[0].api_routing_extra_in_flight == 50
    flag = "--api-routing-extra-in-flight"
    assert parse_args([flag, "0"])[0].api_routing_extra_in_flight == 0
    assert parse_args([flag, "150"])[0].api_routing_extra_in_flight == 150
    with pytest.raises(SystemExit):
        parse_args([flag, "-1"])
    assert f"{flag} must be at least 0" in capsys.readouterr().err


def test_api_credentials_refresh_is_a_flag_of_at_least_zero_seconds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert parse_args([])[0].api_credentials_refresh_seconds == 1.0
    flag = "--api-credentials-refresh-seconds"
    assert parse_args([flag, "0"])[0].api_credentials_refresh_seconds == 0.0
    assert parse_args([flag, "30"])[0].api_credentials_refresh_seconds == 30.0
    for bad in ("-1", "nan"):
        with pytest.raises(SystemExit):
            parse_args([flag, bad])
        assert f"{flag} must be at least 0" in capsys.readouterr().err


def test_cluster_domain_is_a_dns_domain_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_args([])[0].cluster_domain == "cluster.local"
    assert parse_args(["--cluster-domain", "corp.example"])[0].cluster_domain == "corp.example"
    for bad in ("", "Cluster.Local", ".local", "a..b", "a." * 127 + "b"):
        with pytest.raises(SystemExit):
            parse_args(["--cluster-domain", bad])
        assert "is not a DNS domain name" in capsys.readouterr().err


def test_an_empty_bind_address_means_every_address() -> None:
    assert parse_args([])[0].bind_address == "0.0.0.0"
    assert parse_args(["--bind-address="])[0].bind_address == ""
