"""One rule for the pipeline caches of voice-split and reference preparation.

A stage result lives in one file. When that file exists, the caller did not ask to recompute and
the content is still valid, it is reused; otherwise the stage runs and writes it (atomically, so a
killed run never leaves a half-written cache that a later run would trust).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from audiobox.fsutil import atomic_write_json

T = TypeVar("T")


def cached_file(
    path: Path, *, refresh: bool, load: Callable[[Path], T | None], make: Callable[[Path], T]
) -> tuple[T, bool]:
    """(value, reused): `load(path)` when the file is there and not refreshed, else `make(path)`.

    `load` returns None for content that no longer fits (stale version, wrong length); `make`
    computes the value and writes it to `path` itself.
    """
    if not refresh and path.is_file():
        value = load(path)
        if value is not None:
            return value, True
    return make(path), False


def cached_json(
    path: Path,
    *,
    refresh: bool,
    make: Callable[[], dict],
    valid: Callable[[dict], bool] = lambda data: True,
) -> tuple[dict, bool]:
    """(data, reused) for a stage whose result is one JSON object (written with atomic_write_json)."""

    def load(p: Path) -> dict | None:
        data = read_json(p)
        return data if isinstance(data, dict) and valid(data) else None

    def write(p: Path) -> dict:
        data = make()
        atomic_write_json(p, data)
        return data

    return cached_file(path, refresh=refresh, load=load, make=write)


def read_json(path: Path) -> Any | None:
    """The parsed file, or None when it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
