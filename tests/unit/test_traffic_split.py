"""Tests for TrafficSplit: construction rules, equality and hashing, primary, str/repr."""

from __future__ import annotations

from collections.abc import Mapping
from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelroute.core.types import TrafficSplit

VALID = [
    pytest.param({"a": 100}, {"a": 100}, id="one-backend"),
    pytest.param({"a": 90, "b": 10}, {"a": 90, "b": 10}, id="two-backends"),
    pytest.param({"a": 100, "b": 0}, {"a": 100}, id="zero-weight-dropped"),
    pytest.param({"a": 0, "b": 0, "c": 100}, {"c": 100}, id="all-zeros-dropped"),
    pytest.param({"a": 50, "b": 0, "c": 50}, {"a": 50, "c": 50}, id="zero-in-the-middle"),
    pytest.param({"a": 1, "b": 1, "c": 98}, {"a": 1, "b": 1, "c": 98}, id="small-weights"),
    pytest.param({"a": 34, "b": 33, "c": 33}, {"a": 34, "b": 33, "c": 33}, id="three-way"),
]


@pytest.mark.parametrize(("weights", "stored"), VALID)
def test_valid_split_keeps_the_non_zero_weights(
    weights: Mapping[str, int], stored: Mapping[str, int]
) -> None:
    split = TrafficSplit(weights)
    assert dict(split) == stored
    assert list(split) == list(stored)  # listing order is kept
    assert len(split) == len(stored)
    assert sum(split.values()) == 100


INVALID = [
    pytest.param({}, "sum to 100", id="empty"),
    pytest.param({"a": 0}, "sum to 100", id="only-zero"),
    pytest.param({"a": 99}, "sum to 100", id="sum-below-100"),
    pytest.param({"a": 60, "b": 50}, "sum to 100", id="sum-above-100"),
    pytest.param({"a": 101}, "within 0..100", id="above-100"),
    pytest.param({"a": 110, "b": -10}, "within 0..100", id="negative-that-sums-to-100"),
    pytest.param({"a": -1}, "within 0..100", id="negative"),
    pytest.param({"a": 200, "b": -100}, "within 0..100", id="over-and-under"),
]


@pytest.mark.parametrize(("weights", "error"), INVALID)
def test_bad_weights_are_rejected(weights: Mapping[str, int], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        TrafficSplit(weights)


def test_error_message_shows_the_weights_as_given() -> None:
    with pytest.raises(ValueError) as info:
        TrafficSplit({"a": 50, "b": 0, "c": 40})
    assert "{'a': 50, 'b': 0, 'c': 40}" in str(info.value)


def test_constructor_copies_its_input() -> None:
    weights = {"a": 100}
    split = TrafficSplit(weights)
    weights["a"] = 5
    weights["b"] = 95
    assert dict(split) == {"a": 100}


def test_single() -> None:
    split = TrafficSplit.single("vendor")
    assert dict(split) == {"vendor": 100}
    assert split == TrafficSplit({"vendor": 100})
    assert split.primary == "vendor"
    assert split.is_single


@pytest.mark.parametrize(
    ("weights", "single"),
    [
        pytest.param({"a": 100}, True, id="one"),
        pytest.param({"a": 100, "b": 0, "c": 0}, True, id="one-with-zeros"),
        pytest.param({"a": 99, "b": 1}, False, id="two"),
        pytest.param({"a": 50, "b": 0, "c": 50}, False, id="two-with-a-zero"),
    ],
)
def test_is_single(weights: Mapping[str, int], single: bool) -> None:
    assert TrafficSplit(weights).is_single is single


@pytest.mark.parametrize(
    ("weights", "primary"),
    [
        pytest.param({"a": 100}, "a", id="single"),
        pytest.param({"a": 10, "b": 90}, "b", id="most-traffic"),
        pytest.param({"a": 50, "b": 50}, "a", id="tie-first-listed"),
        pytest.param({"b": 50, "a": 50}, "b", id="tie-first-listed-not-alphabetical"),
        pytest.param({"z": 0, "b": 40, "c": 40, "a": 20}, "b", id="tie-after-a-dropped-zero"),
        pytest.param({"a": 20, "b": 40, "c": 40}, "b", id="tie-between-later-entries"),
    ],
)
def test_primary(weights: Mapping[str, int], primary: str) -> None:
    assert TrafficSplit(weights).primary == primary


def test_equality_ignores_zero_entries_and_order() -> None:
    asked = TrafficSplit({"a": 90, "b": 10})
    read_back = TrafficSplit({"c": 0, "b": 10, "a": 90, "d": 0})
    assert asked == read_back
    assert hash(asked) == hash(read_back)
    assert TrafficSplit.single("a") == TrafficSplit({"a": 100, "b": 0})


def test_inequality() -> None:
    assert TrafficSplit({"a": 90, "b": 10}) != TrafficSplit({"a": 10, "b": 90})
    assert TrafficSplit.single("a") != TrafficSplit.single("b")
    assert TrafficSplit.single("a") != TrafficSplit({"a": 50, "b": 50})


def test_hashable_and_usable_as_a_key() -> None:
    seen = {TrafficSplit.single("a"), TrafficSplit({"a": 100, "b": 0}), TrafficSplit.single("b")}
    assert seen == {TrafficSplit.single("a"), TrafficSplit.single("b")}
    by_split = {TrafficSplit({"a": 50, "b": 50}): "half"}
    assert by_split[TrafficSplit({"b": 50, "a": 50})] == "half"


def test_mapping_reads() -> None:
    split = TrafficSplit({"a": 70, "b": 0, "c": 30})
    assert split["a"] == 70
    assert split["b"] == 0  # a dropped backend reads as weight 0, not a KeyError
    assert split["never-listed"] == 0
    assert "a" in split
    assert "b" not in split
    assert 7 not in split  # type: ignore[comparison-overlap]
    assert dict(split.items()) == {"a": 70, "c": 30}


def test_immutable() -> None:
    split = TrafficSplit.single("a")
    with pytest.raises(TypeError):
        split["a"] = 50  # type: ignore[index]
    with pytest.raises(AttributeError):
        split.extra = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("weights", "text"),
    [
        pytest.param({"a": 100}, "a 100%", id="single"),
        pytest.param({"a": 90, "b": 0, "c": 10}, "a 90%, c 10%", id="listing-order-without-zeros"),
    ],
)
def test_str(weights: Mapping[str, int], text: str) -> None:
    assert str(TrafficSplit(weights)) == text


def test_repr_round_trips() -> None:
    split = TrafficSplit({"a": 90, "b": 0, "c": 10})
    assert repr(split) == "TrafficSplit({'a': 90, 'c': 10})"
    assert eval(repr(split), {"TrafficSplit": TrafficSplit}) == split


NAMES = st.sampled_from(["a", "b", "c", "d", "e"])


@st.composite
def splits(draw: st.DrawFn) -> dict[str, int]:
    """Weights summing to 100 over distinct names, with zero entries mixed in."""
    names = draw(st.lists(NAMES, min_size=1, max_size=5, unique=True))
    count = len(names) - 1
    cuts = sorted(draw(st.lists(st.integers(0, 100), min_size=count, max_size=count)))
    bounds = [0, *cuts, 100]
    return {name: bounds[i + 1] - bounds[i] for i, name in enumerate(names)}


@settings(max_examples=200, deadline=None)
@given(splits(), st.randoms(use_true_random=False))
def test_any_valid_split_equals_its_shuffles(weights: dict[str, int], rnd: Random) -> None:
    split = TrafficSplit(weights)
    items = list(weights.items())
    rnd.shuffle(items)
    shuffled = TrafficSplit(dict(items))
    assert split == shuffled
    assert hash(split) == hash(shuffled)
    assert all(weight > 0 for weight in split.values())
    assert sum(split.values()) == 100
    assert split[split.primary] == max(split.values())
    assert split.is_single is (len(split) == 1)
