"""The one user-facing error type, and the one place that turns it into an exit code."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A problem the user can fix (bad input, missing model, unknown voice): shown as one line."""


def run_main(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a CLI entry point, turning failures into one clear stderr line and an exit code.

    `--debug` anywhere in argv (or AUDIOBOX_DEBUG=1) re-raises so the traceback is visible.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("AUDIOBOX_DEBUG") == "1"
    show_library_warnings()
    try:
        return int(main(args) or 0)
    except UserError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # an unexpected failure: still one line unless --debug
        if debug:
            raise
        print(f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", file=sys.stderr)
        return 1


class _StderrLines(logging.Handler):
    """'warning: ...' on whatever sys.stderr is at the time (the apps' console, a test's capture)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"{record.levelname.lower()}: {self.format(record)}", file=sys.stderr)


def show_library_warnings() -> None:
    """The apps' logging setup: the library reports warnings through `logging` ("audiobox.*"), never print."""
    logger = logging.getLogger("audiobox")
    if not any(isinstance(h, _StderrLines) for h in logger.handlers):
        logger.addHandler(_StderrLines(logging.WARNING))
        logger.setLevel(logging.WARNING)


def did_you_mean(value: str, choices) -> str:
    """' (did you mean 'x'?)' when `value` is close to one of `choices`, else ''."""
    import difflib

    by_key = {str(choice).lower(): str(choice) for choice in choices}
    close = difflib.get_close_matches(value.strip().lower(), list(by_key), n=1, cutoff=0.6)
    return f" (did you mean {by_key[close[0]]!r}?)" if close else ""
