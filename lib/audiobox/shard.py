"""One batch script over K workers: which items each shard renders, and putting the shards back.

The split depends only on the script (never on the machine or the registry), so every worker,
and the merge, agree on it. A voice's items stay on one shard unless that voice alone holds more
than a fair share of the text; shards are balanced by text length (times variants). Shard i
writes `manifest.shard-<i>-of-<K>.json` beside its audio in the same output folder, so shards can
share a folder (a cluster volume) or be copied together afterwards. `merge()` checks that every
shard is there and complete, then writes the one `manifest.json` an unsharded run would have.
Standard library only: the vast.ai controller merges with it on a machine without the models.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from audiobox.errors import UserError
from audiobox.fsutil import atomic_path, atomic_write_json

MANIFEST = "manifest.json"
_SHARD_MANIFEST_RE = re.compile(r"manifest\.shard-(\d+)-of-(\d+)\.json")


@dataclasses.dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def manifest_name(self) -> str:
        return f"manifest.shard-{self.index}-of-{self.count}.json"


def parse_shard(spec: str, env: Mapping[str, str] | None = None) -> Shard:
    """`I/K` (1-based), or `auto` / `auto/K` from the job runner: a Kubernetes Indexed Job's
    JOB_COMPLETION_INDEX (0-based) or a Slurm array's SLURM_ARRAY_TASK_ID (minus
    SLURM_ARRAY_TASK_MIN); K from `/K`, SLURM_ARRAY_TASK_COUNT or PAB_SHARD_COUNT."""
    env = os.environ if env is None else env
    spec = spec.strip()
    head, _, tail = spec.partition("/")
    try:
        count = int(tail) if tail else None
        if head == "auto":
            if env.get("JOB_COMPLETION_INDEX", "").strip():
                index = int(env["JOB_COMPLETION_INDEX"]) + 1
            elif env.get("SLURM_ARRAY_TASK_ID", "").strip():
                index = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN") or 0) + 1
            else:
                raise UserError(
                    "--shard auto: neither JOB_COMPLETION_INDEX (Kubernetes) nor SLURM_ARRAY_TASK_ID is set"
                )
            if count is None:
                raw = env.get("SLURM_ARRAY_TASK_COUNT") or env.get("PAB_SHARD_COUNT") or ""
                if not raw.strip():
                    raise UserError("--shard auto: give the count as auto/K, or set PAB_SHARD_COUNT")
                count = int(raw)
        else:
            index = int(head)
    except ValueError:
        raise UserError(f"--shard {spec!r}: use I/K (e.g. 2/3), auto or auto/K") from None
    if count is None:
        raise UserError(f"--shard {spec!r}: use I/K (e.g. 2/3), auto or auto/K")
    if not 1 <= count <= 1000 or not 1 <= index <= count:
        raise UserError(f"--shard {spec!r}: the shard must be between 1 and the count (1..1000)")
    return Shard(index, count)


def assign(items: Sequence[Any], count: int) -> list[int]:
    """The shard (1-based) of each item, in the items' order. Items need `number`, `text`,
    `voice`/`speaker` and `variants` (batch.BatchItem)."""
    groups: dict[str, list[Any]] = {}
    for item in items:
        key = (
            f"voice:{item.voice}"
            if getattr(item, "voice", None)
            else f"speaker:{getattr(item, 'speaker', '')}"
        )
        groups.setdefault(key, []).append(item)
    weight = {
        item.number: max(1, len(item.text)) * max(1, int(getattr(item, "variants", 1) or 1)) for item in items
    }
    fair = sum(weight.values()) / count
    units: list[list[Any]] = []
    for members in groups.values():
        if sum(weight[m.number] for m in members) <= fair:
            units.append(members)
            continue
        # A voice bigger than a fair share is cut into consecutive runs of about a fair share.
        run: list[Any] = []
        for m in members:
            if run and sum(weight[r.number] for r in run) + weight[m.number] > fair:
                units.append(run)
                run = []
            run.append(m)
        units.append(run)
    units.sort(key=lambda u: (-sum(weight[m.number] for m in u), u[0].number))
    loads = [0] * count
    shard_of: dict[int, int] = {}
    for unit in units:
        target = min(range(count), key=lambda s: (loads[s], s))
        loads[target] += sum(weight[m.number] for m in unit)
        for m in unit:
            shard_of[m.number] = target + 1
    return [shard_of[item.number] for item in items]


def numbers_in(items: Sequence[Any], shard: Shard) -> set[int]:
    return {
        item.number for item, s in zip(items, assign(items, shard.count), strict=True) if s == shard.index
    }


# ---------------------------------------------------------------------------------------------
# Merge


@dataclasses.dataclass
class MergeResult:
    manifest_path: Path
    shards: int
    items: int
    done: int


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable shard manifest ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("shard"), dict):
        raise UserError(f"{path}: not a shard manifest")
    return data


def merge(out_dir: Path, count: int | None = None) -> MergeResult:
    """Checks that the K shards in `out_dir` are all there, from the same script, and done with
    their files present; then writes `manifest.json` as an unsharded run would. Idempotent."""
    out_dir = Path(out_dir)
    found: dict[int, dict[int, Path]] = {}
    for path in sorted(out_dir.glob("manifest.shard-*-of-*.json")):
        m = _SHARD_MANIFEST_RE.fullmatch(path.name)
        if m:
            found.setdefault(int(m.group(2)), {})[int(m.group(1))] = path
    if count is None:
        if len(found) != 1:
            counts = ", ".join(str(k) for k in sorted(found)) or "none"
            raise UserError(
                f"{out_dir}: shard manifests for one shard count expected, found counts: {counts}"
            )
        count = next(iter(found))
    present = found.get(count, {})
    missing = [i for i in range(1, count + 1) if i not in present]
    if missing:
        raise UserError(
            f"{out_dir}: shard(s) {', '.join(f'{i}/{count}' for i in missing)} missing; run them, then merge again"
        )
    parts = [_read(present[i]) for i in range(1, count + 1)]
    first = parts[0]
    total = first["shard"].get("total")
    problems: list[str] = []
    entries: dict[int, dict] = {}
    for i, part in enumerate(parts, 1):
        if part.get("script_sha256") != first.get("script_sha256") or part["shard"].get("total") != total:
            problems.append(f"shard {i}/{count} comes from another version of the script")
            continue
        for entry in part.get("items", []):
            if entry["item"] in entries:
                problems.append(f"item {entry['item']} is in two shards")
            entries[entry["item"]] = entry
            if entry.get("status") != "done":
                problems.append(f"item {entry['item']} (shard {i}/{count}) is {entry.get('status')}")
            elif any(not (out_dir / f).is_file() for f in entry.get("files", [])):
                problems.append(f"item {entry['item']} (shard {i}/{count}): its files are missing")
    absent = [n for n in range(1, (total or 0) + 1) if n not in entries]
    if absent:
        problems.append(f"items {absent[:10]} are in no shard")
    if problems:
        shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
        raise UserError(f"{out_dir}: cannot merge: {shown}")
    items = [entries[n] for n in sorted(entries)]
    counts: dict[str, int] = {}
    for e in items:
        counts[e["status"]] = counts.get(e["status"], 0) + 1
    counts["reused"] = sum(1 for e in items if e.get("reused"))
    manifest = {k: v for k, v in first.items() if k != "shard"}
    manifest.update(
        started_at=min(p.get("started_at") or "" for p in parts),
        updated_at=max(p.get("updated_at") or "" for p in parts),
        finished_at=max(p.get("finished_at") or "" for p in parts),
        runs=max(p.get("runs") or 1 for p in parts),
        items=items,
        summary=counts,
        stopped_early=False,
        merged_from=[present[i].name for i in range(1, count + 1)],
    )
    atomic_write_json(out_dir / MANIFEST, manifest)
    return MergeResult(out_dir / MANIFEST, count, len(items), counts.get("done", 0))


def gather(shard_dirs: Sequence[Path], dest: Path) -> list[Path]:
    """Copies the batch outputs found under each shard's folder (wherever a shard manifest is)
    into the same place under `dest`, and returns the output folders to merge. A file two shards
    both hold must be identical (the batch file they were given): anything else is a conflict."""
    out_dirs: set[Path] = set()
    for root in shard_dirs:
        for manifest in sorted(Path(root).rglob("manifest.shard-*-of-*.json")):
            rel = manifest.parent.relative_to(root)
            target = dest / rel
            out_dirs.add(target)
            for src in sorted(manifest.parent.rglob("*")):
                if src.is_symlink() or not src.is_file() or src.name == MANIFEST:
                    continue
                to = target / src.relative_to(manifest.parent)
                if to.exists():
                    if to.read_bytes() != src.read_bytes():
                        raise UserError(f"{to}: two shards wrote different files here")
                    continue
                with atomic_path(
                    to
                ) as tmp:  # a killed gather leaves no half file for the next one to trip on
                    shutil.copy2(src, tmp)
    return sorted(out_dirs)
