"""Tasks files for `vast.sh run`: one app invocation per line; consecutive speak lines become one batch."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any

from audiobox.cloud.errors import EXIT_USAGE, DeployError

# Flags of `voice-synth speak` that map onto fields of a `voice-synth batch` item (JSON Lines).
# A speak line with any other flag runs on its own.
BATCH_ITEM_FLAGS = {
    "--voice": "voice",
    "--speaker": "speaker",
    "--text": "text",
    "--language": "language",
    "--tone": "tone",
    "--profile": "profile",
    "--variants": "variants",
    "--instruct": "instruct",
}


@dataclasses.dataclass
class Task:
    """One unit of remote work. `argv` is an app invocation; `shell` a raw command (`!` lines);
    `batch_items` turns consecutive `voice-synth speak` lines into one `voice-synth batch` run."""

    index: int
    argv: list[str] = dataclasses.field(default_factory=list)
    shell: str | None = None
    source_lines: list[str] = dataclasses.field(default_factory=list)
    batch_items: list[dict] | None = None

    @property
    def mode(self) -> str:
        return "shell" if self.shell is not None else ("batch" if self.batch_items else "app")


def parse_task_line(line: str) -> list[str] | str | None:
    """A tasks-file line: None for blank/comment, a str for `!raw shell`, else the argv (shell quoting kept)."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    if stripped.startswith("!"):
        return stripped[1:].strip()
    try:
        return shlex.split(stripped)
    except ValueError as exc:
        raise DeployError(f"cannot parse task line {stripped!r}: {exc}", EXIT_USAGE) from exc


def speak_batch_item(argv: list[str]) -> dict | None:
    """The batch item for a `voice-synth speak` argv, or None when it needs its own process."""
    if len(argv) < 2 or argv[0] != "voice-synth" or argv[1] != "speak":
        return None
    item: dict[str, Any] = {}
    rest = argv[2:]
    i = 0
    while i < len(rest):
        flag, value = rest[i], None
        if "=" in flag and flag.startswith("--"):
            flag, value = flag.split("=", 1)
            i += 1
        elif i + 1 < len(rest):
            value = rest[i + 1]
            i += 2
        else:
            return None
        key = BATCH_ITEM_FLAGS.get(flag)
        if key is None or key in item:
            return None
        if key == "variants":
            if not value.isdigit():
                return None
            item[key] = int(value)
        else:
            item[key] = value
    if "text" not in item or ("voice" in item) == ("speaker" in item):
        return None
    return item


def build_tasks(
    entries: list[list[str] | str], app_names: set[str], *, batch: bool = True, shards: int = 1
) -> list[Task]:
    """Validates the app names before anything is provisioned and groups speak lines into batches.

    With shards > 1 every app line must be splittable: a `voice-synth batch` line, or speak lines
    (even a single one) that become a batch; `!` shell lines run on every instance."""
    tasks: list[Task] = []
    pending: list[tuple[list[str], dict]] = []

    def flush() -> None:
        if len(pending) >= (1 if shards > 1 else 2):
            tasks.append(
                Task(
                    index=len(tasks),
                    argv=["voice-synth", "batch"],
                    source_lines=[shlex.join(a) for a, _ in pending],
                    batch_items=[it for _, it in pending],
                )
            )
        else:
            for a, _ in pending:
                tasks.append(Task(index=len(tasks), argv=a, source_lines=[shlex.join(a)]))
        pending.clear()

    for entry in entries:
        if isinstance(entry, str):
            flush()
            tasks.append(Task(index=len(tasks), shell=entry, source_lines=["!" + entry]))
            continue
        if not entry or entry[0] not in app_names:
            known = ", ".join(sorted(app_names)) or "(none found)"
            raise DeployError(f"unknown app in task {shlex.join(entry)!r}; apps: {known}", EXIT_USAGE)
        item = speak_batch_item(entry) if batch else None
        if item is not None:
            pending.append((entry, item))
            continue
        if shards > 1 and entry[:2] != ["voice-synth", "batch"]:
            raise DeployError(
                f"cannot split {shlex.join(entry)!r} over {shards} instances: with SHARDS use "
                "`voice-synth batch` lines or speak lines with only batch fields",
                EXIT_USAGE,
            )
        flush()
        tasks.append(Task(index=len(tasks), argv=entry, source_lines=[shlex.join(entry)]))
    flush()
    return tasks


def is_batch(argv: list[str]) -> bool:
    return argv[:2] == ["voice-synth", "batch"]


def list_apps(repo: Path) -> set[str]:
    apps = repo / "apps"
    return {p.name for p in apps.iterdir() if (p / f"{p.name}.py").is_file()} if apps.is_dir() else set()
