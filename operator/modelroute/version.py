"""The operator's version: the installed distribution's, else pyproject.toml's (a source tree)."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "modelroute-operator"
# operator/modelroute/version.py -> the repository root, when running from a source tree.
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
UNKNOWN = "0+unknown"


def version() -> str:
    """The version of ``modelroute-operator``.

    From the installed distribution's metadata (the image installs a wheel; ``make install`` an
    editable install); from ``pyproject.toml`` when the package runs from a source tree without
    being installed (``PYTHONPATH=operator``); ``0+unknown`` if neither says.
    """
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return pyproject_version(PYPROJECT)


def pyproject_version(path: Path) -> str:
    """``[project] version`` of a pyproject.toml, or ``0+unknown`` if it cannot be read."""
    try:
        with path.open("rb") as file:
            project = tomllib.load(file).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return UNKNOWN
    value = project.get("version") if isinstance(project, dict) else None
    return value if isinstance(value, str) and value else UNKNOWN
