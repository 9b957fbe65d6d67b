"""The machine-wide lock, signal handling and the reaper: what keeps instances from leaking.

Ownership is written in two places. Every instance carries a label (see `Label`) naming its run,
shard, the machine that created it and the time its own self-destruct fires. The run's lock file
(held with flock, so the kernel frees it when the process dies, even on kill -9) names the live
run. An instance of this tool is an orphan when no live run owns it: its machine is this one and
the run holding the lock (if any) is another, or its self-destruct time has passed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from audiobox.cloud.errors import EXIT_REFUSED, DeployError, Interrupted
from audiobox.cloud.vastapi import Label, Log, is_ours, now_iso, this_host

DEFAULT_LOCK = "~/.cache/py-audio-box/vast-run.lock"


def _open_lock(path: Path):
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        fh.seek(0)
        holder = fh.read().strip()
        fh.close()
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return None, holder
        raise
    return fh, ""


@contextlib.contextmanager
def run_lock(path: Path, owner: dict[str, Any]) -> Iterator[None]:
    """One provisioning run (or reap) per machine, with the owner written into the lock file."""
    fh, holder = _open_lock(path)
    if fh is None:
        raise DeployError(
            f"another vast run holds {path} ({holder or 'unknown'}); refusing to provision a second one",
            EXIT_REFUSED,
        )
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({**owner, "pid": os.getpid(), "since": now_iso()}) + "\n")
        fh.flush()
        yield
    finally:
        fh.close()


def live_owner(path: Path) -> dict | None:
    """The run holding the lock on this machine right now, or None (the lock is free)."""
    fh, holder = _open_lock(path)
    if fh is not None:
        fh.close()
        return None
    try:
        data = json.loads(holder)
        return data if isinstance(data, dict) else {"job": None}
    except ValueError:
        return {"job": None}  # an older lock format: some run is alive, its job unknown


class SignalGuard:
    """SIGINT/SIGTERM/SIGHUP raise Interrupted, so the destroy in `finally` runs. Once the cleanup
    starts (`defer()`), further signals are only noted: a second Ctrl-C cannot abort the destroy.
    SIGPIPE is ignored so a closed terminal pipe surfaces as an error the log already tolerates."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, log: Log):
        self.log = log
        self.deferring = False
        self.caught: list[int] = []
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, _frame: Any) -> None:
        if self.deferring:
            self.caught.append(signum)
            self.log(f"{signal.Signals(signum).name} received: finishing the cleanup first")
            return
        raise Interrupted(signum)

    def __enter__(self) -> SignalGuard:
        self._previous = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        self._previous[signal.SIGPIPE] = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        return self

    def defer(self) -> None:
        self.deferring = True

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)


@dataclasses.dataclass(frozen=True)
class Orphan:
    instance: dict
    why: str

    @property
    def id(self) -> int:
        return int(self.instance["id"])


def find_orphans(
    instances: list[dict],
    *,
    live: dict | None,
    host: str | None = None,
    now: float | None = None,
    all_hosts: bool = False,
    include_kept: bool = False,
    legacy: bool = True,
) -> tuple[list[Orphan], list[tuple[dict, str]]]:
    """Splits this tool's instances into orphans (to destroy) and the spared, each with a reason."""
    host = host or this_host()
    now = time.time() if now is None else now
    live_job = (live or {}).get("job")
    orphans: list[Orphan] = []
    spared: list[tuple[dict, str]] = []
    for inst in instances:
        if not is_ours(inst):
            continue
        label = Label.parse(str(inst.get("label")))
        if label is None:
            if legacy:
                orphans.append(Orphan(inst, "label from an older version of this tool"))
            else:
                spared.append((inst, "label from an older version: `make vast-reap` decides"))
            continue
        if live and live_job in (None, label.job) and label.host == host:
            spared.append((inst, f"owned by the live run {live_job or '(unknown)'} (pid {live.get('pid')})"))
        elif label.until is None:
            if include_kept:
                orphans.append(Orphan(inst, "kept with --keep (reaped on request)"))
            else:
                spared.append((inst, "kept with --keep: `make vast-reap VAST_ARGS=--include-kept`"))
        elif label.until <= now:
            orphans.append(Orphan(inst, "past its run's maximum duration"))
        elif label.host == host:
            orphans.append(Orphan(inst, "its run on this machine is no longer alive"))
        elif all_hosts:
            orphans.append(Orphan(inst, f"from machine {label.host} (--all-hosts)"))
        else:
            spared.append((inst, f"may belong to a live run on machine {label.host}"))
    return orphans, spared
