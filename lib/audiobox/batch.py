"""Batch scripts: many lines, many voices, one process.

A script is YAML (a list of items, or {defaults: {...}, items: [...]}), JSON Lines (one item per
line), or a plain text dialogue where `[voice-slug]` tags say who speaks the following lines; a
dialogue renders into one file. Items:

    voice | speaker, text, tone, language, profile, variants, output, instruct, seed, model

The whole script is checked before any model loads (syntax with line numbers, unknown voices or
speakers, empty text, duplicate output names). Then each model is loaded once; items that share a
model, voice kind, language and settings are generated together in batched calls.

Resumable and idempotent: every item has a key, the SHA-256 of what determines its audio (text,
voice and prompt, settings, model fingerprint, seed). `manifest.json` in the output dir is
rewritten atomically after every item, so a killed run loses at most the batch in flight; a re-run
skips items whose key is already done and whose files exist. A failing item is recorded and the
others go on (unless `fail_fast`).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from audiobox.errors import UserError
from audiobox.fsutil import atomic_write_json, sha256_file, sha256_json
from audiobox.progress import ProgressEvent, ProgressFn, Reporter

MANIFEST_VERSION = 1
ITEM_KEYS = (
    "voice",
    "speaker",
    "text",
    "tone",
    "language",
    "profile",
    "variants",
    "output",
    "instruct",
    "seed",
    "model",
)
DIALOGUE_SUFFIXES = (".txt", ".dialogue", ".script")
MAX_ERRORS_SHOWN = 20
DEFAULT_BATCH_SIZE = 8
DIALOGUE_PAUSE_S = 0.45
_TAG_RE = re.compile(r"^\[(?P<tag>[^\]]+)\]\s*(?P<rest>.*)$")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # used with fullmatch: no trailing newline


@dataclass
class BatchItem:
    number: int  # 1-based position in the script
    line: int  # line in the script file where the item starts
    text: str
    voice: str | None = None
    speaker: str | None = None
    tone: str | None = None
    language: str = "auto"
    profile: str | None = None
    variants: int = 1
    output: str | None = None
    instruct: str | None = None
    seed: int | None = None
    model: str | None = None

    def where(self, script: Path) -> str:
        return f"{script.name}:{self.line} (item {self.number})"


@dataclass
class Script:
    path: Path
    kind: str  # yaml | jsonl | dialogue
    items: list[BatchItem]
    sha256: str
    problems: list[str] = field(default_factory=list)  # item-level errors, reported with the plan's

    @property
    def name(self) -> str:
        return re.sub(r"[^a-z0-9._-]+", "-", self.path.stem.lower()).strip("-.") or "script"

    @property
    def folder_name(self) -> str:
        """The default output folder: script.yaml and script.jsonl must not share one."""
        suffix = re.sub(r"[^a-z0-9]+", "", self.path.suffix.lower())
        return f"{self.name}-{suffix}" if suffix else self.name


# ---------------------------------------------------------------------------------------------
# Parsing (syntax and field types; no registry, no models)


def parse_script(path: str | Path) -> Script:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"script not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text") from exc
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        kind, raw = "jsonl", _parse_jsonl(path, text)
    elif suffix in (".yaml", ".yml"):
        kind, raw = "yaml", _parse_yaml(path, text)
    elif suffix in DIALOGUE_SUFFIXES:
        kind, raw = "dialogue", _parse_dialogue(path, text)
    else:
        raise UserError(
            f"{path}: unknown script type {suffix or '(none)'}; use .yaml/.yml, .jsonl or .txt (dialogue)"
        )
    if not raw:
        raise UserError(f"{path}: the script has no items")
    errors: list[str] = []
    items = []
    for number, (line, data) in enumerate(raw, 1):
        try:
            items.append(_make_item(number, line, data))
        except UserError as exc:
            errors.append(f"{path.name}:{line} (item {number}): {exc}")
    return Script(path=path, kind=kind, items=items, sha256=sha256_file(path), problems=errors)


def _raise_if(errors: list[str], path: Path) -> None:
    if not errors:
        return
    shown = errors[:MAX_ERRORS_SHOWN]
    more = f"\n  ... and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
    raise UserError(
        f"{path.name}: {len(errors)} problem{'s' if len(errors) > 1 else ''} in the script, nothing was "
        f"generated:\n  " + "\n  ".join(shown) + more
    )


def _parse_jsonl(path: Path, text: str) -> list[tuple[int, Any]]:
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("//"):
            continue
        try:
            out.append((lineno, json.loads(stripped)))
        except json.JSONDecodeError as exc:
            raise UserError(
                f"{path.name}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})"
            ) from None
    return out


def _parse_yaml(path: Path, text: str) -> list[tuple[int, Any]]:
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path.name}:{mark.line + 1}" if mark is not None else path.name
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{where}: not valid YAML ({problem})") from None
    if root is None:
        return []
    defaults: dict = {}
    items_node, items = root, data
    if isinstance(root, yaml.MappingNode):
        if not isinstance(data, dict) or "items" not in data:
            raise UserError(
                f"{path.name}:{root.start_mark.line + 1}: a YAML script is a list of items, "
                f"or a mapping with 'items' (and optional 'defaults')"
            )
        unknown = set(data) - {"items", "defaults"}
        if unknown:
            raise UserError(
                f"{path.name}: unknown top-level key(s) {', '.join(sorted(map(str, unknown)))} "
                f"(allowed: items, defaults)"
            )
        defaults = data.get("defaults") or {}
        if not isinstance(defaults, dict):
            raise UserError(f"{path.name}: 'defaults' must be a mapping")
        items = data["items"]
        items_node = next(v for k, v in root.value if k.value == "items")
    if not isinstance(items_node, yaml.SequenceNode) or not isinstance(items, list):
        raise UserError(f"{path.name}:{items_node.start_mark.line + 1}: expected a list of items")
    out = []
    for node, item in zip(items_node.value, items):
        if isinstance(item, dict) and defaults:
            item = {**defaults, **item}
        out.append((node.start_mark.line + 1, item))
    return out


def _parse_dialogue(path: Path, text: str) -> list[tuple[int, Any]]:
    """`[slug] line`, or `[slug]` alone then lines; `[slug:tone]`, `[speaker=ryan]`; # comments."""
    out = []
    current: dict | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _TAG_RE.match(stripped)
        if match:
            current = _dialogue_tag(path, lineno, match.group("tag").strip())
            stripped = match.group("rest").strip()
            if not stripped:
                continue
        if current is None:
            raise UserError(f"{path.name}:{lineno}: dialogue text before any [voice] tag")
        out.append((lineno, {**current, "text": stripped}))
    return out


def _dialogue_tag(path: Path, lineno: int, tag: str) -> dict:
    if tag.startswith("speaker="):
        return {"speaker": tag.split("=", 1)[1].strip()}
    voice, _, tone = tag.partition(":")
    if not voice.strip():
        raise UserError(f"{path.name}:{lineno}: empty [voice] tag")
    return {"voice": voice.strip(), **({"tone": tone.strip()} if tone.strip() else {})}


def _make_item(number: int, line: int, data: Any) -> BatchItem:
    if not isinstance(data, dict):
        raise UserError(f"an item must be a mapping/object with at least 'text', got {type(data).__name__}")
    unknown = [k for k in data if k not in ITEM_KEYS]
    if unknown:
        raise UserError(f"unknown field(s) {', '.join(map(str, unknown))} (allowed: {', '.join(ITEM_KEYS)})")
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        raise UserError("empty or missing 'text'")
    if not any(ch.isalnum() for ch in text):
        raise UserError("'text' has no letters or digits to speak")
    for key in ("voice", "speaker", "tone", "language", "profile", "output", "instruct", "model"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise UserError(f"'{key}' must be a string")
    if bool(data.get("voice")) == bool(data.get("speaker")):
        raise UserError("give exactly one of 'voice' (a registered voice) or 'speaker' (a built-in speaker)")
    variants = data.get("variants", 1)
    if isinstance(variants, bool) or not isinstance(variants, int) or not 1 <= variants <= 16:
        raise UserError("'variants' must be a whole number from 1 to 16")
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise UserError("'seed' must be a non-negative whole number")
    output = data.get("output")
    if output is not None and (not isinstance(output, str) or not _NAME_RE.fullmatch(output)):
        raise UserError(
            f"'output' {output!r} must be a plain file name (letters, digits, '.', '_', '-'; no folders)"
        )
    return BatchItem(
        number=number,
        line=line,
        text=text.strip(),
        voice=data.get("voice"),
        speaker=data.get("speaker"),
        tone=data.get("tone"),
        language=data.get("language") or "auto",
        profile=data.get("profile"),
        variants=variants,
        output=output,
        instruct=data.get("instruct"),
        seed=seed,
        model=data.get("model"),
    )


# ---------------------------------------------------------------------------------------------
# Planning: resolve every item against the registry and model configs (JSON only, no torch)


@dataclass(frozen=True)
class BatchOptions:
    out_dir: Path | None = None  # default: <work>/batch/<script stem>-<suffix> (Script.folder_name)
    format: str = "wav"
    model: str | None = None  # for items whose voice needs this kind of model (an item's own wins)
    profile: str | None = None  # default profile (an item's own profile wins)
    knobs: dict = field(default_factory=dict)
    greedy: bool = False
    seed: int | None = None  # base seed: item N gets seed + N unless it sets one
    variants: int | None = None  # default variants (an item's own value wins)
    batch_size: int = DEFAULT_BATCH_SIZE
    select_best: bool = False
    qa: bool = False
    judge_asr: str = "auto"
    judge_asr_model: str | None = None
    fail_fast: bool = False
    pause_s: float = DIALOGUE_PAUSE_S
    shard: Any = None  # shard.Shard: render only this shard's items (see audiobox.shard)


@dataclass
class PlannedItem:
    item: BatchItem
    voice_id: str
    kind: str  # clone | speaker
    model_kind: str  # base | custom_voice
    model_ref: str
    language: str
    settings: Any  # GenerationSettings
    spec_args: dict
    prompt_id: str | None
    reference_wav: Path | None
    seed: int
    variants: int
    name: str
    key: str
    chunk: bool


def plan_script(script: Script, registry, options: BatchOptions) -> list[PlannedItem]:
    """Check every item against the voices and models it names; all problems in one error."""
    from audiobox.speak import SpeakRequest, check_request, resolve_voice
    from audiobox.tts.models import read_model_info
    from audiobox.tts.settings import resolve_settings
    from audiobox.tts.text import chunk_text, clean_text

    errors: list[str] = list(script.problems)
    planned: list[PlannedItem] = []
    infos: dict[str, Any] = {}
    names: dict[str, int] = {}
    override = read_model_info(options.model) if options.model else None
    for item in script.items:
        try:
            request = SpeakRequest(
                text=item.text,
                voice=item.voice,
                speaker=item.speaker,
                instruct=item.instruct,
                tone=item.tone,
                language=item.language,
                model=item.model,
            )
            if override is not None and not item.model:
                kind = resolve_voice(request, registry).model_kind
                if override.model_type == kind:
                    request = replace(request, model=options.model)
            checked = check_request(request, registry, infos)  # the same checks as `speak`
            resolved, info, language = checked.resolved, checked.info, checked.language
            spec_args, prompt_id = checked.spec_args, checked.prompt_id
            reference = None
            if resolved.kind == "clone":
                voice = registry.get(item.voice)
                reference = voice.ref_wav if voice.ref_wav and voice.ref_wav.is_file() else None
            settings, _ = resolve_settings(
                item.profile or options.profile, resolved.defaults, options.greedy, **options.knobs
            )
            text = clean_text(item.text)
            chunk = len(chunk_text(text, language=language)) > 1
            variants = item.variants if item.variants != 1 or options.variants is None else options.variants
            seed = (
                item.seed
                if item.seed is not None
                else (options.seed + item.number if options.seed is not None else None)
            )
            name = item.output or (
                f"{item.number:03d}-{resolved.voice_id}"
                if script.kind != "dialogue"
                else f"{item.number:03d}"
            )
            # every file stem the item writes (x, x.take_01...): two items never write one file
            stems = [name] + (
                [f"{name}.take_{k:02d}" for k in range(1, variants + 1)] if variants > 1 else []
            )
            for stem in stems:
                if stem.lower() in names:
                    raise UserError(
                        f"output {stem!r} would also be written by item {names[stem.lower()]}; "
                        f"give one of them another 'output'"
                    )
            names.update({stem.lower(): item.number for stem in stems})
            key_material = {
                "text": text,
                "voice": resolved.voice_id,
                "kind": resolved.kind,
                "spec": spec_args,
                "prompt": prompt_id,
                "voice_meta": resolved.meta,
                "language": language,
                "settings": settings.to_dict(),
                "variants": variants,
                "seed": seed,
                "model": {"ref": info.ref, "fingerprint": info.fingerprint},
                "format": options.format,
                "select_best": options.select_best,
            }
            key = sha256_json(key_material)
            if seed is None:  # reproducible without a seed: derived from the content
                seed = int(key[:8], 16) % (2**31)
            planned.append(
                PlannedItem(
                    item=item,
                    voice_id=resolved.voice_id,
                    kind=resolved.kind,
                    model_kind=resolved.model_kind,
                    model_ref=resolved.model_ref,
                    language=language,
                    settings=settings,
                    spec_args=spec_args,
                    prompt_id=prompt_id,
                    reference_wav=reference,
                    seed=seed,
                    variants=variants,
                    name=name,
                    key=key,
                    chunk=chunk,
                )
            )
        except UserError as exc:
            errors.append(f"{item.where(script.path)}: {exc}")
    errors.sort(key=lambda line: int(re.search(r"\(item (\d+)\)", line).group(1)) if "(item " in line else 0)
    _raise_if(errors, script.path)
    return planned


# ---------------------------------------------------------------------------------------------
# The manifest


def _fresh_name(plan: PlannedItem, folders: list[Path], run: int) -> str:
    """The item's output name, or `<name>.run<N>` when a file of that name is already there (a
    changed item, or a file the user put there): never written over unseen."""
    from audiobox.audio import OUTPUT_FORMATS

    stems = [plan.name] + (
        [f"{plan.name}.take_{k:02d}" for k in range(1, plan.variants + 1)] if plan.variants > 1 else []
    )
    clash = any((d / f"{stem}.{ext}").exists() for d in folders for stem in stems for ext in OUTPUT_FORMATS)
    return f"{plan.name}.run{run}" if clash else plan.name


class Manifest:
    """manifest.json: one entry per item, rewritten atomically after every change."""

    def __init__(
        self, path: Path, script: Script, planned: list[PlannedItem], out_dir: Path, shard: dict | None = None
    ):
        self.path = path
        self._position = {plan.item.number: i for i, plan in enumerate(planned)}
        previous = self._load_previous(path)
        self.data = {
            "version": MANIFEST_VERSION,
            "script": str(script.path),
            "script_sha256": script.sha256,
            "kind": script.kind,
            "out_dir": str(out_dir),
            "started_at": _now(),
            "updated_at": _now(),
            "finished_at": None,
            "runs": previous.get("runs", 0) + 1,
            "items": [],
            "summary": {},
            "dialogue": None,
        }
        if shard is not None:
            self.data["shard"] = shard
        # another script's folder (by file name: a script moved, or resumed on another machine, is the same)
        if previous.get("script") and Path(previous["script"]).name != Path(script.path).name:
            raise UserError(
                f"{out_dir} holds the outputs of another script ({previous['script']}); "
                f"pass --out-exact DIR to choose a folder for {script.path.name}"
            )
        done_by_key = {e["key"]: e for e in previous.get("items", []) if e.get("status") == "done"}
        for plan in planned:
            old = done_by_key.get(plan.key)
            if old and all((out_dir / f).is_file() for f in old.get("files", [])) and old.get("files"):
                entry = dict(old, item=plan.item.number, line=plan.item.line, reused=True)
            else:
                plan.name = _fresh_name(plan, [out_dir, out_dir / f"{script.name}.parts"], self.data["runs"])
                entry = {
                    "item": plan.item.number,
                    "line": plan.item.line,
                    "output": plan.name,
                    "key": plan.key,
                    "voice": plan.voice_id,
                    "text": plan.item.text,
                    "model": plan.model_ref,
                    "status": "pending",
                    "files": [],
                    "reused": False,
                }
            self.data["items"].append(entry)
        self.save()

    @staticmethod
    def _load_previous(path: Path) -> dict:
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # a damaged manifest only costs the skipping: items are generated again
        return data if isinstance(data, dict) and data.get("version") == MANIFEST_VERSION else {}

    def entry(self, number: int) -> dict:
        return self.data["items"][self._position[number]]

    def update(self, number: int, **fields) -> None:
        self.entry(number).update(fields)
        self.save()

    def save(self) -> None:
        counts: dict[str, int] = {}
        for e in self.data["items"]:
            counts[e["status"]] = counts.get(e["status"], 0) + 1
        counts["reused"] = sum(1 for e in self.data["items"] if e.get("reused"))
        self.data["summary"] = counts
        self.data["updated_at"] = _now()
        atomic_write_json(self.path, self.data)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# Running


@dataclass
class BatchResult:
    out_dir: Path
    manifest_path: Path
    done: int
    failed: int
    reused: int
    audio_sec: float
    synth_sec: float
    dialogue_file: Path | None = None
    failures: list[str] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)  # done items: {"item", "files" (paths), "seed"}

    @property
    def ok(self) -> bool:
        return self.failed == 0


class _Stats:
    def __init__(self):
        self.audio_sec = 0.0
        self.synth_sec = 0.0

    @property
    def rtf(self) -> float | None:
        return self.synth_sec / self.audio_sec if self.audio_sec else None


def run_batch(
    script: Script,
    dirs,
    pool,
    options: BatchOptions = BatchOptions(),
    judge=None,
    progress: ProgressFn | None = None,
    registry=None,
) -> BatchResult:
    """Plan (fails before any model loads), then generate by model, batching what can be batched.

    `progress` gets a "batch" stage: items done of the total, with audio seconds and RTF so far."""
    from audiobox.voices import VoiceRegistry

    registry = registry or VoiceRegistry(dirs.voices)
    planned = plan_script(script, registry, options)
    out_dir = Path(options.out_dir) if options.out_dir else dirs.work / "batch" / script.folder_name
    manifest_path, shard_info = out_dir / "manifest.json", None
    if options.shard is not None:
        from audiobox.shard import numbers_in

        if script.kind == "dialogue":
            raise UserError(f"{script.path}: a dialogue renders into one file; run it without --shard")
        mine = numbers_in(script.items, options.shard)
        shard_info = {
            "index": options.shard.index,
            "count": options.shard.count,
            "items": sorted(mine),
            "total": len(planned),
        }
        planned = [p for p in planned if p.item.number in mine]
        manifest_path = out_dir / options.shard.manifest_name
    out_dir.mkdir(parents=True, exist_ok=True)
    if script.kind == "dialogue":
        parts_dir = out_dir / f"{script.name}.parts"
        parts_dir.mkdir(exist_ok=True)
    manifest = Manifest(manifest_path, script, planned, out_dir, shard_info)
    stats = _Stats()
    failures: list[str] = []
    todo = [p for p in planned if manifest.entry(p.item.number)["status"] != "done"]
    state = {"done": len(planned) - len(todo), "total": len(planned)}

    reporter = Reporter(progress)

    def report(plan: PlannedItem | None = None):
        rtf = f", RTF {stats.rtf:.2f}" if stats.rtf else ""
        note = f"item {plan.item.number}; " if plan else ""
        reporter.update("batch", state["done"], message=f"{note}{stats.audio_sec:.1f} s of audio{rtf}")

    reporter.start("batch", state["total"], "items")
    report()
    if (options.select_best or options.qa) and judge is None and todo:
        from audiobox.takes import JudgeOptions, TakeJudge

        judge = TakeJudge(
            JudgeOptions(
                asr=options.judge_asr, whisper_model=options.judge_asr_model, cache_dir=dirs.stage("asr")
            )
        )
    runner = _Runner(
        dirs,
        pool,
        options,
        registry,
        manifest,
        out_dir,
        stats,
        judge,
        parts_dir=out_dir / f"{script.name}.parts" if script.kind == "dialogue" else None,
        progress=progress,
    )
    stop = False
    for model_ref, group in _group_by_model(todo):
        for batch in _batches(group, options.batch_size):
            results = runner.run_batch(model_ref, batch)
            for plan, error in results:
                state["done"] += 1
                if error:
                    failures.append(f"{plan.item.where(script.path)}: {error}")
                report(plan)
                if error and options.fail_fast:
                    stop = True
            if stop:
                break
        if stop:
            break
    dialogue_file = None
    if script.kind == "dialogue" and not failures and not stop:
        dialogue_file = _join_dialogue(script, planned, manifest, out_dir, options)
    manifest.data["finished_at"] = _now()
    manifest.data["stopped_early"] = stop
    manifest.save()
    counts = manifest.data["summary"]
    reporter.end("batch", f"{counts.get('done', 0)} done, {counts.get('failed', 0)} failed")
    return BatchResult(
        out_dir=out_dir,
        manifest_path=manifest.path,
        done=counts.get("done", 0),
        failed=counts.get("failed", 0),
        reused=counts.get("reused", 0),
        audio_sec=stats.audio_sec,
        synth_sec=stats.synth_sec,
        dialogue_file=dialogue_file,
        failures=failures,
        outputs=[
            {"item": e["item"], "files": [str(out_dir / f) for f in e["files"]], "seed": e.get("seed")}
            for e in manifest.data["items"]
            if e["status"] == "done"
        ],
    )


def _group_by_model(planned: list[PlannedItem]) -> list[tuple[str, list[PlannedItem]]]:
    groups: dict[str, list[PlannedItem]] = {}
    for plan in planned:
        groups.setdefault(plan.model_ref, []).append(plan)
    return list(groups.items())


def _batches(group: list[PlannedItem], batch_size: int) -> list[list[PlannedItem]]:
    """Items that one generate() call can take together: same voice kind, language, settings,
    one variant and no chunking; sorted by text length so padding wastes little. The rest go alone
    (their variants are still batched inside Synthesizer.speak)."""
    together: dict[tuple, list[PlannedItem]] = {}
    alone: list[list[PlannedItem]] = []
    for plan in group:
        if plan.variants == 1 and not plan.chunk and batch_size > 1:
            key = (plan.kind, plan.language, json.dumps(plan.settings.to_dict(), sort_keys=True))
            together.setdefault(key, []).append(plan)
        else:
            alone.append([plan])
    out: list[list[PlannedItem]] = []
    for members in together.values():
        members.sort(key=lambda p: len(p.item.text))
        out.extend(members[i : i + batch_size] for i in range(0, len(members), batch_size))
    return sorted(out + alone, key=lambda b: min(p.item.number for p in b))


class _Runner:
    def __init__(
        self,
        dirs,
        pool,
        options: BatchOptions,
        registry,
        manifest: Manifest,
        out_dir: Path,
        stats: _Stats,
        judge,
        parts_dir: Path | None,
        progress: ProgressFn | None = None,
    ):
        self.dirs, self.pool, self.options, self.registry = dirs, pool, options, registry
        self.progress = progress  # the take checks' own "check takes" stage, once per checked item
        self.manifest, self.out_dir, self.stats, self.judge, self.parts_dir = (
            manifest,
            out_dir,
            stats,
            judge,
            parts_dir,
        )
        self._specs: dict[int, Any] = {}

    def _spec(self, plan: PlannedItem, synth):
        from audiobox.tts.synth import VoiceSpec

        if plan.kind == "speaker":
            return synth.check_voice(VoiceSpec.builtin(**plan.spec_args))
        prompt, _ = self.registry.load_prompt(plan.item.voice, synth.info, plan.item.tone)
        return synth.check_voice(VoiceSpec.clone(prompt))

    def run_batch(self, model_ref: str, batch: list[PlannedItem]) -> list[tuple[PlannedItem, str | None]]:
        try:
            synth = self.pool.synthesizer(model_ref, batch[0].model_kind)
        except UserError as exc:
            return [self._fail(p, str(exc)) for p in batch]
        ready, results = [], []
        for plan in batch:
            try:
                ready.append((plan, self._spec(plan, synth)))
            except UserError as exc:
                results.append(self._fail(plan, str(exc)))
        if len(ready) > 1 and synth.seeds_per_row:  # else each item alone, so its seed reproduces it
            try:
                results.extend(self._generate_together(synth, ready))
                return results
            except Exception as exc:  # isolate the item that breaks the batch: retry one by one
                note = f"batched call failed ({type(exc).__name__}: {exc}); retrying items one by one"
                for plan, _ in ready:
                    self.manifest.entry(plan.item.number).setdefault("notes", []).append(note)
        for plan, spec in ready:
            results.append(self._generate_alone(synth, plan, spec))
        return results

    def _generate_together(self, synth, ready) -> list[tuple[PlannedItem, str | None]]:
        from audiobox.tts.synth import Take

        first = ready[0][0]
        started = time.perf_counter()
        wavs, rate = synth.generate(
            [p.item.text for p, _ in ready],
            [s for _, s in ready],
            first.language,
            first.settings,
            [p.seed for p, _ in ready],  # each row its own generator: its seed alone reproduces it
        )
        spent = time.perf_counter() - started
        total_audio = sum(len(w) for w in wavs) / rate or 1.0
        out = []
        for (plan, _), wav in zip(ready, wavs):
            share = spent * (len(wav) / rate) / total_audio
            take = Take(index=1, samples=wav, sample_rate=rate, seed=plan.seed, synth_sec=share)
            out.append(
                self._finish(
                    plan,
                    [take],
                    synth,
                    share,
                    batched_with=[p.item.number for p, _ in ready],
                    seed=plan.seed,
                )
            )
        return out

    def _generate_alone(self, synth, plan: PlannedItem, spec) -> tuple[PlannedItem, str | None]:
        started = time.perf_counter()
        try:
            takes = synth.speak(
                plan.item.text, spec, plan.language, plan.settings, plan.variants, plan.seed, chunk=plan.chunk
            )
        except UserError as exc:
            return self._fail(plan, str(exc))
        except Exception as exc:  # one broken item must not take the run down
            return self._fail(plan, f"{type(exc).__name__}: {exc}")
        return self._finish(
            plan, takes, synth, time.perf_counter() - started, batched_with=[plan.item.number], seed=plan.seed
        )

    def _finish(
        self, plan: PlannedItem, takes, synth, synth_sec: float, batched_with, seed
    ) -> tuple[PlannedItem, str | None]:
        from audiobox.audio import load_audio, write_audio

        try:
            fmt = self.options.format
            target_dir = self.parts_dir or self.out_dir
            board = None
            if self.judge is not None and (self.options.qa or (self.options.select_best and len(takes) > 1)):
                reference = load_audio(plan.reference_wav) if plan.reference_wav else None
                board = self.judge.judge(
                    takes,
                    plan.item.text,
                    plan.language,
                    reference=reference,
                    progress=_naming_item(self.progress, plan.item.number),
                )
            files = []
            if len(takes) == 1:
                files.append(
                    write_audio(
                        target_dir / f"{plan.name}.{fmt}", takes[0].samples, takes[0].sample_rate, fmt
                    )
                )
            else:
                for take in takes:
                    files.append(
                        write_audio(
                            target_dir / f"{plan.name}.take_{take.index:02d}.{fmt}",
                            take.samples,
                            take.sample_rate,
                            fmt,
                        )
                    )
                if self.options.select_best:
                    if board is None or board.best_index is None:
                        return self._fail(
                            plan,
                            "no take passed the checks (see 'scoreboard' in the manifest)",
                            files=[str(f.relative_to(self.out_dir)) for f in files],
                            scoreboard=board.to_dict() if board else None,
                        )
                    best = next(t for t in takes if t.index == board.best_index)
                    files.append(
                        write_audio(target_dir / f"{plan.name}.{fmt}", best.samples, best.sample_rate, fmt)
                    )
            audio_sec = sum(t.duration for t in takes)
            self.stats.audio_sec += audio_sec
            self.stats.synth_sec += synth_sec
            self.manifest.update(
                plan.item.number,
                status="done",
                error=None,
                files=[str(f.relative_to(self.out_dir)) for f in files],
                seed=seed,
                batched_with=batched_with,
                duration_sec=round(audio_sec, 3),
                synth_sec=round(synth_sec, 3),
                rtf=round(synth_sec / audio_sec, 3) if audio_sec else None,
                backend=synth.backend_name,
                model=synth.info.ref,
                scoreboard=board.to_dict() if board else None,
                best_take=board.best_index if board else None,
                qa_passed=(board.best_index is not None) if board else None,
                finished_at=_now(),
            )
            return plan, None
        except UserError as exc:
            return self._fail(plan, str(exc))

    def _fail(self, plan: PlannedItem, error: str, **fields) -> tuple[PlannedItem, str]:
        self.manifest.update(plan.item.number, status="failed", error=error, finished_at=_now(), **fields)
        return plan, error


def _naming_item(sink: ProgressFn | None, number: int) -> ProgressFn | None:
    """`sink`, with each stage's start saying which item it is for (the checks run once per item)."""
    if sink is None:
        return None

    def forward(event: ProgressEvent) -> None:
        sink(replace(event, message=f"item {number}") if event.phase == "start" else event)

    return forward


def _join_dialogue(
    script: Script, planned: list[PlannedItem], manifest: Manifest, out_dir: Path, options: BatchOptions
) -> Path:
    """All lines in script order, with the same pause after each line, into <out>/<script>.<fmt>."""
    from audiobox.audio import TTS_SAMPLE_RATE, join_with_pauses, load_audio, resample, write_audio

    pieces = []
    rate = TTS_SAMPLE_RATE
    for plan in planned:
        entry = manifest.entry(plan.item.number)
        main_file = next((f for f in entry["files"] if ".take_" not in f), entry["files"][0])
        audio = load_audio(out_dir / main_file)
        pieces.append(resample(audio.samples, audio.sample_rate, rate))
    path = write_audio(
        out_dir / f"{script.name}.{options.format}",
        join_with_pauses(pieces, rate, options.pause_s),
        rate,
        options.format,
    )
    manifest.data["dialogue"] = {
        "file": path.name,
        "lines": len(pieces),
        "duration_sec": round(
            sum(len(p) for p in pieces) / rate + options.pause_s * max(0, len(pieces) - 1), 3
        ),
    }
    return path
