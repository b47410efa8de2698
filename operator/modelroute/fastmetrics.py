"""Metric families with many children, rendered fast and in slices.

prometheus_client renders ~15 us per sample through Metric and Sample objects: 1.6 s for the
108,035 series of 3,000 routes, in one piece, on the event loop. The families here hold one
small child per label set whose exposition lines are a template made once, at the child's
creation, so a render is one ``%`` per child and one join (about 10x faster); a family that
did not change since the last render is not rendered again; :func:`exposition_parts` renders
in slices of :data:`CHUNK` series, and the event loop runs between two (``control.scrape``;
a thread would hold the GIL against the loop). A family renders from a snapshot of its
children: the loop may add and remove series between slices.

The families implement the collector protocol, so they sit in a usual
:class:`~prometheus_client.CollectorRegistry` (``get_sample_value``, ``generate_latest`` see
them); only :func:`exposition` takes the fast path.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import ClassVar, Generic, TypeVar

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

_skip = threading.local()  # set while exposition() has generate_latest render the others
#: Series rendered per slice: under a millisecond of work (a histogram is 15 lines).
CHUNK = 64


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _label_text(names: Sequence[str], values: Sequence[str]) -> str:
    return ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))


class Changes:
    """A family's change count: a render is reused while it stays the same."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class ValueChild:
    """One labelled series of a counter or a gauge."""

    __slots__ = ("_changes", "_line", "value")

    def __init__(self, line: str, changes: Changes) -> None:
        self._line = line  # the exposition line with a %r for the value
        self._changes = changes
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount``."""
        self.value += amount
        self._changes.count += 1

    def set(self, value: float) -> None:
        """Set the value (gauges); setting the same value again changes nothing."""
        if value != self.value:
            self.value = float(value)
            self._changes.count += 1

    def render(self) -> str:
        """The exposition line."""
        return self._line % self.value


class HistogramChild:
    """One labelled histogram: cumulative bucket counts (the last is +Inf) and the sum.

    Its text (15 lines, ~3 us to format) is kept until the next observation: the family
    changes with every probe of any target, but a scrape re-formats only the targets probed
    since the last one."""

    __slots__ = ("_bounds", "_changes", "_lines", "_text", "counts", "sum")

    def __init__(self, lines: str, bounds: tuple[float, ...], changes: Changes) -> None:
        self._lines = lines  # bucket, count and sum lines with %d/%r for the values
        self._bounds = bounds
        self._changes = changes
        self._text: str | None = None
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation of ``value``."""
        counts = self.counts
        # Cumulative: every bucket whose bound is >= value, and +Inf.
        for index in range(bisect.bisect_left(self._bounds, value), len(counts)):
            counts[index] += 1
        self.sum += value
        self._text = None
        self._changes.count += 1

    def render(self) -> str:
        """The bucket lines, then count and sum."""
        text = self._text
        if text is None:
            text = self._text = self._lines % (*self.counts, self.counts[-1], self.sum)
        return text


Child = TypeVar("Child", ValueChild, HistogramChild)


class _Family(Generic[Child]):
    """Children by label values; ``indexed``: removal by a prefix of the labels is indexed (a
    set per prefix: only for families whose series are removed that way)."""

    kind: ClassVar[str]

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], *, indexed: bool = False
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], Child] = {}
        # Children by all labels but the last (e.g. a backend's failure reasons).
        self._by_prefix: dict[tuple[str, ...], set[tuple[str, ...]]] | None = (
            {} if indexed else None
        )
        self._changes = Changes()
        self._rendered: tuple[int, tuple[bytes, ...]] = (-1, ())
        doc = documentation.replace("\\", r"\\").replace("\n", r"\n")
        self._header = f"# HELP {name} {doc}\n# TYPE {name} {self.kind}\n"

    def labels(self, *values: str) -> Child:
        """The child of these label values, created on first use."""
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {values}")
            child = self._children[values] = self._new_child(values)
            if self._by_prefix is not None:
                self._by_prefix.setdefault(values[:-1], set()).add(values)
            self._changes.count += 1
        return child

    def remove(self, *values: str) -> None:
        """Drop one child; KeyError when it does not exist (as prometheus_client)."""
        del self._children[values]
        self._changes.count += 1
        if self._by_prefix is None:
            return
        siblings = self._by_prefix[values[:-1]]
        siblings.discard(values)
        if not siblings:
            del self._by_prefix[values[:-1]]

    def remove_by_labels(self, labels: Mapping[str, str]) -> None:
        """Drop every child whose labels include ``labels``."""
        if self._by_prefix is not None and tuple(labels) == self.labelnames[:-1]:
            keys: Iterable[tuple[str, ...]] = list(self._by_prefix.get(tuple(labels.values()), ()))
        else:
            where = [(self.labelnames.index(k), v) for k, v in labels.items()]
            keys = [key for key in self._children if all(key[i] == v for i, v in where)]
        for key in keys:
            self.remove(*key)

    def _new_child(self, values: tuple[str, ...]) -> Child:
        raise NotImplementedError

    def parts(self) -> Iterator[bytes]:
        """This family in the text format, encoded, in slices of :data:`CHUNK` series (from a
        snapshot: a change made between slices is rendered next time). Reused while nothing
        changed: at steady state most gauges (up, active, weight) are rendered once."""
        changes = self._changes.count  # read first: a change during the render redoes it
        if self._rendered[0] == changes:
            yield from self._rendered[1]
            return
        children = list(self._children.values())  # a snapshot: the loop may add children
        rendered: list[bytes] = [self._header.encode()] if children else []
        yield from rendered
        for start in range(0, len(children), CHUNK):
            chunk = "".join([c.render() for c in children[start : start + CHUNK]]).encode()
            rendered.append(chunk)
            yield chunk
        self._rendered = (changes, tuple(rendered))

    def render(self) -> bytes:
        """This family in the text format, encoded, at once."""
        return b"".join(self.parts())

    def describe(self) -> list[Metric]:
        """The family without samples (lets the registry check for duplicate names)."""
        return [self._family()]

    def collect(self) -> list[Metric]:
        """The family with its samples, for prometheus_client (slow path; tests, tools)."""
        if getattr(_skip, "active", False):
            return []
        family = self._family()
        for values, child in list(self._children.items()):
            self._add(family, list(values), child)
        return [family]

    def _family(self) -> Metric:
        raise NotImplementedError

    def _add(self, family: Metric, values: list[str], child: Child) -> None:
        raise NotImplementedError


class _ValueFamily(_Family[ValueChild]):
    def _new_child(self, values: tuple[str, ...]) -> ValueChild:
        labels = _label_text(self.labelnames, values).replace("%", "%%")
        line = f"{self.name}{{{labels}}} %r\n" if labels else f"{self.name} %r\n"
        return ValueChild(line, self._changes)


class FastCounter(_ValueFamily):
    """A counter family; ``name`` ends in ``_total``."""

    kind = "counter"

    def _family(self) -> Metric:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _add(self, family: Metric, values: list[str], child: ValueChild) -> None:
        assert isinstance(family, CounterMetricFamily)
        family.add_metric(values, child.value)


class FastGauge(_ValueFamily):
    """A gauge family."""

    kind = "gauge"

    def _family(self) -> Metric:
        return GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _add(self, family: Metric, values: list[str], child: ValueChild) -> None:
        assert isinstance(family, GaugeMetricFamily)
        family.add_metric(values, child.value)


class FastHistogram(_Family[HistogramChild]):
    """A histogram family with fixed buckets (+Inf is added)."""

    kind = "histogram"

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        super().__init__(name, documentation, labelnames)
        self.buckets = tuple(sorted(buckets))
        # repr() of a float is how prometheus_client writes a finite bound (0.005, 1.0, 30.0).
        self._les = [repr(float(b)) for b in self.buckets if b != float("inf")] + ["+Inf"]
        self.buckets = self.buckets[: len(self._les) - 1]

    def _new_child(self, values: tuple[str, ...]) -> HistogramChild:
        labels = _label_text(self.labelnames, values).replace("%", "%%")
        sep = "," if labels else ""
        lines = "".join(f'{self.name}_bucket{{{labels}{sep}le="{le}"}} %d\n' for le in self._les)
        braces = f"{{{labels}}}" if labels else ""
        lines += f"{self.name}_count{braces} %d\n{self.name}_sum{braces} %r\n"
        return HistogramChild(lines, self.buckets, self._changes)

    def _family(self) -> Metric:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _add(self, family: Metric, values: list[str], child: HistogramChild) -> None:
        assert isinstance(family, HistogramMetricFamily)
        family.add_metric(values, list(zip(self._les, child.counts, strict=True)), child.sum)


FastFamily = FastCounter | FastGauge | FastHistogram


def exposition_parts(
    registry: CollectorRegistry, families: Iterable[FastFamily]
) -> Iterator[bytes]:
    """The text exposition of ``registry`` in slices: every collector but ``families`` (which
    it holds) by ``generate_latest``, then ``families`` by the fast path."""
    _skip.active = True
    try:
        others = generate_latest(registry)
    finally:
        _skip.active = False
    yield others
    for family in families:
        yield from family.parts()


def exposition(registry: CollectorRegistry, families: Iterable[FastFamily]) -> bytes:
    """The whole text exposition at once (see :func:`exposition_parts`)."""
    return b"".join(exposition_parts(registry, families))
