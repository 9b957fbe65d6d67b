"""The one progress protocol from the library to whoever shows it.

Library code reports what it is doing as `ProgressEvent`s handed to one callable (`ProgressFn`) that
the caller passes in (`progress=`); it never draws bars or prints. The apps render the events
(audiobox.cli.common.ProgressView: a rich bar on a terminal, plain periodic lines in logs and CI);
a server or a test can collect them. `Reporter` is the library's side: start/update/end per stage,
and nothing at all when no callable was given.

A stage is a named step ("download", "vad", "synthesize", "batch", "load", ...): one `start`, any
number of `update`s with `done` out of `total` (in `unit`), one `end` whose message says how it went.
An update without `done` is a note (a step inside the stage, e.g. "transcribing candidate 2/3").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

Phase = Literal["start", "update", "end"]


@dataclass(frozen=True)
class ProgressEvent:
    stage: str
    phase: Phase = "update"
    done: float | None = None  # how far, in `unit`; None on start/end and on notes
    total: float | None = None  # None: length not known (yet)
    unit: str = ""  # "bytes", "s" (of audio), "frames", "items", "windows", "candidates", ...
    message: str = ""  # start: what runs; update: the current part; end: the outcome ("cached", "5 clips")


ProgressFn = Callable[[ProgressEvent], None]


class Reporter:
    """Library side of the protocol: emits events to `sink` (or drops them when there is none).

    Remembers each stage's total and unit from its start, so updates only need `done`.
    """

    def __init__(self, sink: ProgressFn | None = None):
        self.sink = sink
        self._shape: dict[str, tuple[float | None, str]] = {}

    def emit(self, event: ProgressEvent) -> None:
        if self.sink is not None:
            self.sink(event)

    def start(self, stage: str, total: float | None = None, unit: str = "", message: str = "") -> None:
        self._shape[stage] = (total, unit)
        self.emit(ProgressEvent(stage, "start", total=total, unit=unit, message=message))

    def update(self, stage: str, done: float, total: float | None = None, message: str = "") -> None:
        known_total, unit = self._shape.get(stage, (None, ""))
        if total is not None:
            self._shape[stage] = (total, unit)
        total = known_total if total is None else total
        self.emit(ProgressEvent(stage, "update", done=done, total=total, unit=unit, message=message))

    def note(self, stage: str, message: str) -> None:
        self.emit(ProgressEvent(stage, "update", message=message))

    def end(self, stage: str, message: str = "") -> None:
        total, unit = self._shape.pop(stage, (None, ""))
        self.emit(ProgressEvent(stage, "end", total=total, unit=unit, message=message))

    @contextmanager
    def step(self, stage: str, message: str = "") -> Iterator[None]:
        """A stage without a measurable length (loading a model): start, then end when the block ends."""
        self.start(stage, message=message)
        yield
        self.end(stage)

    def shifted(self, stage: str, offset: float, total: float) -> ProgressFn:
        """A sink for a part of `stage`: the part's updates become `offset + done` out of `total`."""

        def forward(event: ProgressEvent) -> None:
            if event.phase == "update" and event.done is not None:
                self.update(stage, offset + event.done, total, event.message)

        return forward


def relabel(sink: ProgressFn | None, **fields) -> ProgressFn | None:
    """`sink`, with the given fields (stage, total, message...) set on every event passed through."""
    if sink is None:
        return None
    return lambda event: sink(dataclasses.replace(event, **fields))
