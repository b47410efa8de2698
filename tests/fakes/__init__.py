"""Fakes shared by the unit tests, the benchmarks and the demo."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakes.openai_backend import (
        CONTROL_PREFIX,
        Dialect,
        FakeBackend,
        FakeBackendThread,
        Fault,
    )

__all__ = ["CONTROL_PREFIX", "Dialect", "FakeBackend", "FakeBackendThread", "Fault"]


def __getattr__(name: str) -> Any:
    # Imported lazily: an eager import here would put the module in sys.modules before
    # `python -m tests.fakes.openai_backend` runs it as __main__, and runpy warns about that.
    if name in __all__:
        return getattr(importlib.import_module("tests.fakes.openai_backend"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
