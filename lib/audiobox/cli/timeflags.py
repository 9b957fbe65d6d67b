"""The argparse types of every time flag: seconds (90, 26.6), m:ss (1:30) or h:mm:ss (1:02:30.5).

Standard library only (audiobox.sources.parse_timestamp is), so the vast.ai controller
(audiobox.cli.vast, run without the project's dependencies) parses its waits and limits as the apps do.
"""

from __future__ import annotations

import argparse

from audiobox.errors import UserError


def time_value(value: str) -> float:
    """argparse type of every time flag: seconds (90, 26.6) or [h:]m:ss (1:30, 0:26.6)."""
    from audiobox.sources import parse_timestamp

    try:
        return parse_timestamp(value)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_time(value: str) -> float:
    """A time value greater than zero (lengths, pauses, windows, waits)."""
    seconds = time_value(value)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be greater than 0")
    return seconds
