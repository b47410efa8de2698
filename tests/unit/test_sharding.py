"""Sharding: ``--label-selector`` (checked, canonical), each shard's own Lease, and the
server-side watch filter handed to kopf. The controller's side (a route relabelled to another
shard is dropped, never finalized) is in test_controller.py."""

from __future__ import annotations

import kopf
import pytest

from modelroute.api.models import GROUP, PLURAL, VERSION
from modelroute.cli import parse_args
from modelroute.kube import selector
from modelroute.settings import Settings, apply_to_kopf

SHARD_A = "modelroute.dev/shard=a"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", "", id="empty"),
        pytest.param("  ", "", id="blank"),
        pytest.param("modelroute.dev/shard=a", "modelroute.dev/shard=a", id="equals"),
        pytest.param("modelroute.dev/shard == a", "modelroute.dev/shard=a", id="double-equals"),
        pytest.param("!modelroute.dev/shard", "!modelroute.dev/shard", id="does-not-exist"),
        pytest.param("tier", "tier", id="exists"),
        pytest.param("tier!=gold", "tier!=gold", id="not-equals"),
        pytest.param("tier=", "tier=", id="empty-value"),
        pytest.param("b=1, a=2", "a=2,b=1", id="sorted"),
        pytest.param("env in (prod, dev)", "env in (dev,prod)", id="in"),
        pytest.param("env notin (x),team=a", "env notin (x),team=a", id="notin"),
        pytest.param("a.b-c/d_e.f=G-h_i.9", "a.b-c/d_e.f=G-h_i.9", id="every-character"),
    ],
)
def test_valid_selectors_have_one_canonical_form(text: str, expected: str) -> None:
    assert selector.canonical(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("a=b,", "empty requirement", id="trailing-comma"),
        pytest.param("a=b=c", "invalid label value 'b=c'", id="two-equals"),
        pytest.param("-a=b", "invalid label key '-a'", id="bad-key"),
        pytest.param("Mr.Dev/shard=a", "invalid label key", id="uppercase-prefix"),
        pytest.param("a=" + "x" * 64, "at most 63", id="long-value"),
        pytest.param("k" * 64, "cannot parse", id="long-name"),
        pytest.param("env in (a", "unbalanced", id="open-paren"),
        pytest.param("env in ()", "at least one value", id="empty-set"),
        pytest.param("a>1", "supported:", id="greater-than"),
        pytest.param("env in ((a))", "unbalanced", id="nested"),
    ],
)
def test_invalid_selectors_say_why(text: str, message: str) -> None:
    with pytest.raises(selector.SelectorError) as caught:
        selector.canonical(text)
    assert message in str(caught.value)


def test_bad_selector_flag_exits_with_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["--label-selector", "modelroute.dev/shard=a,"])
    assert exited.value.code == 2
    assert "--label-selector: empty requirement" in capsys.readouterr().err


def test_each_shard_elects_in_its_own_lease() -> None:
    unsharded, _ = parse_args(["--leader-election"])
    a, _ = parse_args(["--leader-election", "--label-selector", SHARD_A])
    a_again, _ = parse_args(["--label-selector", "modelroute.dev/shard == a"])
    b, _ = parse_args(["--label-selector", "modelroute.dev/shard=b"])
    main, _ = parse_args(["--label-selector", "!modelroute.dev/shard"])
    assert unsharded.leader_election_lease == Settings().leader_election_lease
    assert a.label_selector == SHARD_A
    assert a.leader_election_lease == f"modelroute-operator-{selector.lease_suffix(SHARD_A)}"
    assert a_again.leader_election_lease == a.leader_election_lease  # same shard, same Lease
    names = {s.leader_election_lease for s in (unsharded, a, b, main)}
    assert len(names) == 4


def test_an_explicit_lease_name_wins() -> None:
    settings, _ = parse_args(["--label-selector", SHARD_A, "--leader-election-lease", "mr-a"])
    assert settings.leader_election_lease == "mr-a"


def test_the_selector_filters_the_modelroute_watch_server_side() -> None:
    kopf_settings = kopf.OperatorSettings()
    apply_to_kopf(Settings(label_selector=SHARD_A), kopf_settings)
    selectors = kopf_settings.watching.label_selectors
    # kopf joins what collect() gives into the labelSelector of the list and watch requests.
    assert selectors.collect(kopf.Resource(GROUP, VERSION, PLURAL)) == [SHARD_A]
    assert selectors.collect(kopf.Resource("", "v1", "secrets")) == []
    assert selectors.collect(kopf.Resource("", "v1", "services")) == []
    unsharded = kopf.OperatorSettings()
    apply_to_kopf(Settings(), unsharded)
    assert unsharded.watching.label_selectors.collect(kopf.Resource(GROUP, VERSION, PLURAL)) == []
