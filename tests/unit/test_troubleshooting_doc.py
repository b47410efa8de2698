"""docs/troubleshooting.md documents every reason the operator sets, in the right table.

A reason added to one of the enums below without a row in the doc fails here, and so does a row
for a reason the operator no longer sets.
"""

from __future__ import annotations

import enum
import re

import pytest

from modelroute.control.handover import HandoverEvent
from modelroute.core.types import (
    DegradedReason,
    IncidentEvent,
    ProbeFailure,
    ReadyReason,
    ReconcilingReason,
    StalledReason,
    Transition,
)
from modelroute.routing.aigatewayroute_object import AIGatewayRouteReason
from modelroute.routing.httproute_object import HTTPRouteReason
from modelroute.routing.service_object import ServiceReason
from tests.harness.apiserver import REPO_ROOT

DOC = REPO_ROOT / "docs" / "troubleshooting.md"
README = REPO_ROOT / "README.md"

# Each section of the doc (its "## " heading) and the enums whose values it must document.
SECTIONS: dict[str, tuple[type[enum.StrEnum], ...]] = {
    "`Ready` condition reasons": (
        ReadyReason,
        ServiceReason,
        HTTPRouteReason,
        AIGatewayRouteReason,
    ),
    "`Degraded` condition reasons": (DegradedReason,),
    "`Reconciling` and `Stalled` (kstatus) reasons": (ReconcilingReason, StalledReason),
    "Probe failure classes": (ProbeFailure,),
    "Event reasons": (Transition, IncidentEvent, HandoverEvent),
}
REASON_CELL = re.compile(r"^`([A-Za-z]+)`$")


def sections() -> dict[str, str]:
    """The doc's text by ``## `` heading."""
    parts = re.split(r"^## (.+)$", DOC.read_text(), flags=re.MULTILINE)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def rows(body: str) -> list[list[str]]:
    """The cells of each table row of a section (header and separator rows left out)."""
    table = [line for line in body.splitlines() if line.startswith("|")]
    cells = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in table]
    return [row for row in cells[2:] if row]


def documented(body: str) -> dict[str, list[str]]:
    """Reason -> its row, for rows whose first cell is one reason in backticks."""
    found: dict[str, list[str]] = {}
    for row in rows(body):
        match = REASON_CELL.match(row[0])
        if match:
            assert match.group(1) not in found, f"{match.group(1)} has two rows"
            found[match.group(1)] = row
    return found


def test_the_doc_has_a_table_for_each_kind_of_reason() -> None:
    assert set(SECTIONS) <= set(sections())


@pytest.mark.parametrize("title", list(SECTIONS))
def test_every_reason_the_operator_sets_has_a_row(title: str) -> None:
    rows_by_reason = documented(sections()[title])
    values = {member.value for enum_type in SECTIONS[title] for member in enum_type}
    missing = sorted(values - set(rows_by_reason))
    assert not missing, f"docs/troubleshooting.md, table {title!r}: no row for {missing}"
    stale = sorted(set(rows_by_reason) - values)
    assert not stale, f"docs/troubleshooting.md, table {title!r}: the operator never sets {stale}"


@pytest.mark.parametrize("title", list(SECTIONS))
def test_every_row_says_what_it_means_and_what_to_do(title: str) -> None:
    body = sections()[title]
    header = next(line for line in body.splitlines() if line.startswith("|"))
    columns = [cell.strip() for cell in header.strip().strip("|").split("|")]
    assert columns[0] == "Reason"
    assert columns[-2:] == ["What it means", "What to do"]
    for row in rows(body):
        assert len(row) == len(columns), f"{row[0]}: {len(row)} cells, expected {len(columns)}"
        assert all(row), f"{row[0]}: an empty cell"


def test_driver_reasons_name_their_driver() -> None:
    by_reason = documented(sections()["`Ready` condition reasons"])
    drivers: dict[type[enum.StrEnum], str] = {
        ServiceReason: "Service",
        HTTPRouteReason: "HTTPRoute",
        AIGatewayRouteReason: "AIGatewayRoute",
    }
    for enum_type, driver in drivers.items():
        for member in enum_type:
            assert driver in by_reason[member.value][1], f"{member.value}: driver {driver}"


def test_the_readme_links_the_doc() -> None:
    assert "(docs/troubleshooting.md)" in README.read_text()
