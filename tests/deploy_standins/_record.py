"""Shared by the stand-ins for `vastai`, `ssh` and `rsync` used by tests/test_deploy_vast.py.

Each stand-in appends one JSON line per call to $FAKE_VAST_DIR/calls.jsonl with the command line
the operating system shows for it (/proc/self/cmdline: what `ps` would show) and answers from
$FAKE_VAST_DIR/scenario.json and state.json.
"""

import json
import os
import sys
from pathlib import Path

STATE_DIR = Path(os.environ["FAKE_VAST_DIR"])


def os_cmdline() -> list[str]:
    try:
        raw = Path("/proc/self/cmdline").read_bytes()
        return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
    except OSError:
        return list(sys.argv)


def record(tool: str, **extra) -> None:
    entry = {"tool": tool, "cmdline": os_cmdline(), "argv": sys.argv[1:], **extra}
    with open(STATE_DIR / "calls.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")


def scenario() -> dict:
    return json.loads((STATE_DIR / "scenario.json").read_text())


def load_state() -> dict:
    path = STATE_DIR / "state.json"
    if path.exists():
        return json.loads(path.read_text())
    return {"instances": scenario().get("instances", []), "show_calls": 0, "next_id": 1000}


def save_state(state: dict) -> None:
    (STATE_DIR / "state.json").write_text(json.dumps(state))
