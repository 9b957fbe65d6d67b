"""The named voice registry: <cache>/voices/<slug>/{voice.json, ref.wav, prompts/*.safetensors+json}.

Every write happens under one registry lock and lands atomically (temp file or staging dir, then
rename), so concurrent writers or a killed process never leave a half-written voice. Stdlib +
filelock only: listing voices stays fast.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from audiobox.errors import UserError
from audiobox.fsutil import atomic_write_json

VOICE_SCHEMA_VERSION = 1
ENGINES = ("clone_prompt", "custom_voice", "designed_clone")
SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
TONE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
PROMPT_FILE_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,120}\.(safetensors|json)$")
ZIP_ALLOWED_FILES = {"voice.json", "ref.wav", "source.wav"}
ZIP_MAX_ENTRIES = 512
ZIP_MAX_TOTAL_BYTES = 512 * 1024 * 1024
LOCK_TIMEOUT_S = 60


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def validate_slug(slug: str) -> str:
    """Lower-case letters, digits and inner dashes, 1-64 chars: safe as a folder name anywhere."""
    if not isinstance(slug, str) or not SLUG_RE.match(slug):
        raise UserError(
            f"invalid voice name {slug!r}: use 1-64 lower-case letters, digits and dashes "
            f"(no leading/trailing dash), e.g. 'narrator-en'"
        )
    return slug


def validate_tone(tone: str | None) -> str | None:
    if tone is not None and not TONE_RE.match(tone):
        raise UserError(f"invalid tone {tone!r}: use lower-case letters, digits, '-' or '_' (max 32)")
    return tone


@dataclass
class Voice:
    slug: str
    dir: Path
    data: dict

    @property
    def engine(self) -> str:
        return self.data["engine"]

    @property
    def display_name(self) -> str:
        return self.data.get("display_name") or self.slug

    @property
    def ref(self) -> dict | None:
        return self.data.get("ref")

    @property
    def prompts(self) -> dict:
        return self.data.get("prompts") or {}

    @property
    def custom_voice(self) -> dict | None:
        return self.data.get("custom_voice")

    @property
    def generation_defaults(self) -> dict:
        return self.data.get("generation_defaults") or {}

    @property
    def ref_wav(self) -> Path | None:
        ref = self.ref
        return self.dir / ref["wav"] if ref and ref.get("wav") else None

    def tones(self) -> dict[str, dict]:
        """tone -> {'instruct': ...} (custom voices) or {'prompts': [ids]} (clone voices)."""
        out = {name: dict(v) for name, v in (self.data.get("tones") or {}).items()}
        for pid, rec in self.prompts.items():
            if rec.get("tone"):
                out.setdefault(rec["tone"], {}).setdefault("prompts", []).append(pid)
        return out

    @property
    def ready(self) -> bool:
        if self.engine == "custom_voice":
            return bool(self.custom_voice and self.custom_voice.get("speaker"))
        return bool(self.prompts)

    def prompt_id_for(self, model_tag: str, tone: str | None = None) -> str | None:
        """The newest prompt built for this model (and tone): by recorded sequence, never by mtime."""
        matches = [
            (rec.get("seq", 0), pid)
            for pid, rec in self.prompts.items()
            if rec.get("model_tag") == model_tag and rec.get("tone") == tone
        ]
        return max(matches)[1] if matches else None

    def summary(self) -> dict:
        cv = self.custom_voice or {}
        return {
            "slug": self.slug,
            "display_name": self.display_name,
            "engine": self.engine,
            "description": self.data.get("description", ""),
            "ready": self.ready,
            "language": (self.ref or {}).get("language") or cv.get("language_default"),
            "ref_duration_sec": (self.ref or {}).get("duration_sec"),
            "transcript": (self.ref or {}).get("transcript"),
            "prompt_models": sorted({rec.get("model") for rec in self.prompts.values()}),
            "speaker": cv.get("speaker"),
            "tones": sorted(self.tones()),
            "generation_defaults": self.generation_defaults,
            "created_at": self.data.get("created_at"),
            "updated_at": self.data.get("updated_at"),
        }


def _check_voice_data(data: object, where: str) -> dict:
    if not isinstance(data, dict):
        raise UserError(f"{where} is corrupted (not a JSON object)")
    if data.get("schema_version") != VOICE_SCHEMA_VERSION:
        raise UserError(
            f"{where} has schema_version {data.get('schema_version')!r}; this toolbox reads {VOICE_SCHEMA_VERSION}"
        )
    if data.get("engine") not in ENGINES:
        raise UserError(f"{where} has an unknown engine {data.get('engine')!r}")
    for key in ("prompts", "tones", "generation_defaults", "source"):
        if not isinstance(data.get(key, {}), dict):
            raise UserError(f"{where} is corrupted ({key!r} is not an object)")
    for pid, rec in (data.get("prompts") or {}).items():
        if (
            not isinstance(rec, dict)
            or not PROMPT_FILE_RE.match(PurePosixPath(str(rec.get("file", ""))).name)
            or not str(rec.get("file", "")).startswith("prompts/")
        ):
            raise UserError(f"{where} is corrupted (prompt {pid!r} has a bad file entry)")
    ref = data.get("ref")
    if ref is not None and (not isinstance(ref, dict) or ref.get("wav") not in ("ref.wav",)):
        raise UserError(f"{where} is corrupted (bad 'ref' entry)")
    return data


class VoiceRegistry:
    def __init__(self, root: Path):
        self.root = Path(root)

    # -- reading ---------------------------------------------------------------------------
    def voice_dir(self, slug: str) -> Path:
        return self.root / validate_slug(slug)

    def exists(self, slug: str) -> bool:
        return (self.voice_dir(slug) / "voice.json").is_file()

    def get(self, slug: str) -> Voice:
        path = self.voice_dir(slug) / "voice.json"
        if not path.is_file():
            known = ", ".join(v.slug for v in self.list()[0][:20])
            raise UserError(
                f"no voice named {slug!r} in {self.root}"
                + (f" (known: {known})" if known else " (the registry is empty)")
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"voice {slug!r} is corrupted: {path} is not valid JSON ({exc})") from exc
        return Voice(slug, path.parent, _check_voice_data(data, f"voice {slug!r} ({path})"))

    def list(self) -> tuple[list[Voice], list[str]]:
        """All readable voices (sorted by slug) and one line per broken entry: nothing is skipped silently."""
        voices, problems = [], []
        if not self.root.is_dir():
            return voices, problems
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith(".") or not entry.is_dir() or not SLUG_RE.match(entry.name):
                continue
            try:
                voices.append(self.get(entry.name))
            except UserError as exc:
                problems.append(str(exc))
        return voices, problems

    # -- writing ---------------------------------------------------------------------------
    def lock(self):
        from filelock import FileLock

        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / ".registry.lock"), timeout=LOCK_TIMEOUT_S)

    def _staging_dir(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))

    def _install(self, staging: Path, slug: str, replace: bool) -> None:
        """Swap a fully written staging dir into place (caller holds the lock)."""
        target = self.voice_dir(slug)
        trash = None
        if target.exists():
            if not replace:
                raise UserError(
                    f"voice {slug!r} already exists (use --force to replace it, or pick another name)"
                )
            trash = self.root / f".trash-{slug}-{uuid.uuid4().hex[:8]}"
            os.replace(target, trash)
        os.replace(staging, target)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)

    def create(
        self,
        slug: str,
        data: dict,
        write_files: Callable[[Path], None] | None = None,
        replace: bool = False,
        prompts: tuple = (),
    ) -> Voice:
        """Create (or with replace=True, atomically replace) a voice from a full record.

        `prompts` holds (ClonePrompt, tone, extra) triples stored in the same transaction, so a
        voice never appears without the prompts it was created with.
        """
        validate_slug(slug)
        stamp = now_iso()
        record = {
            "schema_version": VOICE_SCHEMA_VERSION,
            "slug": slug,
            "display_name": slug,
            "description": "",
            "created_at": stamp,
            "updated_at": stamp,
            "source": {},
            "ref": None,
            "prompts": {},
            "tones": {},
            "custom_voice": None,
            "generation_defaults": {},
            **data,
        }
        _check_voice_data(record, f"new voice {slug!r}")
        with self.lock():
            if self.exists(slug) and not replace:
                raise UserError(
                    f"voice {slug!r} already exists (use --force to replace it, or pick another name)"
                )
            staging = self._staging_dir()
            try:
                if write_files:
                    write_files(staging)
                for prompt, tone, extra in prompts:
                    _store_prompt(record, staging, prompt, tone, extra)
                atomic_write_json(staging / "voice.json", record)
                self._install(staging, slug, replace)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return self.get(slug)

    def update(self, slug: str, mutate: Callable[[dict, Path], None]) -> Voice:
        """Apply `mutate(record, voice_dir)` under the lock; it may write new files first.

        voice.json is rewritten last and atomically, so it never points at a file not yet written.
        """
        with self.lock():
            voice = self.get(slug)
            record = json.loads(json.dumps(voice.data))
            mutate(record, voice.dir)
            record["updated_at"] = now_iso()
            _check_voice_data(record, f"voice {slug!r}")
            atomic_write_json(voice.dir / "voice.json", record)
        return self.get(slug)

    def add_prompt(self, slug: str, prompt, tone: str | None = None, extra: dict | None = None) -> str:
        """Store a ClonePrompt as prompts/<model_tag>_<mode>[_<tone>]_v<N> and index it."""
        added: list[str] = []
        self.update(
            slug,
            lambda record, voice_dir: added.append(_store_prompt(record, voice_dir, prompt, tone, extra)),
        )
        return added[0]

    def load_prompt(self, slug: str, model_info, tone: str | None = None):
        from audiobox.tts.prompts import ClonePrompt

        voice = self.get(slug)
        if voice.engine == "custom_voice":
            raise UserError(f"voice {slug!r} is a built-in speaker voice; it has no clone prompt")
        pid = voice.prompt_id_for(model_info.tag, tone)
        if pid is None:
            if tone and tone not in voice.tones():
                raise UserError(
                    f"voice {slug!r} has no tone {tone!r} (tones: {', '.join(sorted(voice.tones())) or 'none'})"
                )
            other = sorted({rec.get("model") for rec in voice.prompts.values() if rec.get("tone") == tone})
            if not voice.prompts:
                raise UserError(
                    f"voice {slug!r} has no clone prompt yet: build one with "
                    f"`voice-clone synth --voice {slug} --model {model_info.ref}`"
                )
            raise UserError(
                f"voice {slug!r} has no prompt{' for tone ' + repr(tone) if tone else ''} built with "
                f"{model_info.ref} (built with: {', '.join(map(str, other)) or 'other tones only'}); "
                f"pass --model with one of those, or build one with `voice-clone synth --voice {slug} --model {model_info.ref}`"
            )
        prompt = ClonePrompt.load(voice.dir / "prompts" / pid)
        prompt.check_compatible(model_info, slug)
        return prompt, pid

    def rename(self, old: str, new: str) -> Voice:
        validate_slug(new)
        with self.lock():
            voice = self.get(old)
            if self.exists(new):
                raise UserError(f"voice {new!r} already exists")
            record = dict(voice.data, slug=new, updated_at=now_iso())
            if record.get("display_name") == old:
                record["display_name"] = new
            atomic_write_json(voice.dir / "voice.json", record)
            os.replace(voice.dir, self.voice_dir(new))
        return self.get(new)

    def delete(self, slug: str) -> None:
        with self.lock():
            voice = self.get(slug)
            trash = self.root / f".trash-{slug}-{uuid.uuid4().hex[:8]}"
            os.replace(voice.dir, trash)
            shutil.rmtree(trash, ignore_errors=True)

    # -- exchange --------------------------------------------------------------------------
    def export_zip(self, slug: str, dest: Path, force: bool = False) -> Path:
        voice = self.get(slug)
        dest = Path(dest)
        if dest.exists() and not force:
            raise UserError(f"{dest} already exists (use --force to overwrite)")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.partial")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(voice.dir.rglob("*")):
                if path.is_file() and not path.is_symlink() and not path.name.startswith("."):
                    zf.write(path, f"{slug}/{path.relative_to(voice.dir).as_posix()}")
        os.replace(tmp, dest)
        return dest

    def import_zip(self, zip_path: Path, new_slug: str | None = None, force: bool = False) -> Voice:
        """Import a voice exported by export_zip, after checking every entry; nothing else is trusted."""
        zip_path = Path(zip_path)
        if not zip_path.is_file():
            raise UserError(f"zip file not found: {zip_path}")
        try:
            zf = zipfile.ZipFile(zip_path)
        except zipfile.BadZipFile as exc:
            raise UserError(f"{zip_path} is not a valid zip file") from exc
        with zf:
            folder, members = _check_zip_members(zf)
            slug = validate_slug(new_slug or folder)
            try:
                data = json.loads(zf.read(f"{folder}/voice.json").decode("utf-8"))
            except (KeyError, ValueError, UnicodeDecodeError) as exc:
                raise UserError(f"{zip_path}: voice.json is missing or not valid JSON") from exc
            _check_voice_data(data, f"{zip_path}:voice.json")
            names = {m.filename[len(folder) + 1 :] for m in members}
            for rec in (data.get("prompts") or {}).values():
                stem = rec["file"][: -len(".safetensors")]
                if rec["file"] not in names or f"{stem}.json" not in names:
                    raise UserError(
                        f"{zip_path}: voice.json lists {rec['file']} but the zip does not contain it"
                    )
            if data.get("ref") and "ref.wav" not in names:
                raise UserError(f"{zip_path}: voice.json lists ref.wav but the zip does not contain it")
            data.update(slug=slug, updated_at=now_iso())

            def write_files(staging: Path) -> None:
                for member in members:
                    rel = member.filename[len(folder) + 1 :]
                    if not rel or member.is_dir() or rel == "voice.json":
                        continue
                    out = staging / rel
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(member) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst)

            with self.lock():
                if self.exists(slug) and not force:
                    raise UserError(
                        f"voice {slug!r} already exists (use --force to replace it, or --as NEW_NAME)"
                    )
                staging = self._staging_dir()
                try:
                    write_files(staging)
                    atomic_write_json(staging / "voice.json", data)
                    self._install(staging, slug, replace=force)
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
        return self.get(slug)


def _store_prompt(record: dict, voice_dir: Path, prompt, tone: str | None, extra: dict | None) -> str:
    """Write the prompt files, then index them in `record`; returns the new prompt id."""
    validate_tone(tone)
    prompts = record.setdefault("prompts", {})
    tag = prompt.model.get("tag", "model")
    base = f"{tag}_{prompt.mode}" + (f"_{tone}" if tone else "")
    n = 1 + max(
        [int(m.group(1)) for pid in prompts if (m := re.match(re.escape(base) + r"_v(\d+)$", pid))] or [0]
    )
    pid = f"{base}_v{n}"
    prompt.save(voice_dir / "prompts" / pid)
    prompts[pid] = {
        "file": f"prompts/{pid}.safetensors",
        "model": prompt.model.get("ref"),
        "model_tag": tag,
        "mode": prompt.mode,
        "tone": tone,
        "created_at": now_iso(),
        "seq": 1 + max([r.get("seq", 0) for r in prompts.values()] or [0]),
        **(extra or {}),
    }
    return pid


def _check_zip_members(zf: zipfile.ZipFile) -> tuple[str, list[zipfile.ZipInfo]]:
    members = zf.infolist()
    if not members:
        raise UserError("the zip is empty")
    if len(members) > ZIP_MAX_ENTRIES:
        raise UserError(f"the zip has {len(members)} entries (limit {ZIP_MAX_ENTRIES})")
    total = sum(m.file_size for m in members)
    if total > ZIP_MAX_TOTAL_BYTES:
        raise UserError(
            f"the zip would unpack to {total / 1e6:.0f} MB (limit {ZIP_MAX_TOTAL_BYTES / 1e6:.0f} MB)"
        )
    folders = set()
    for m in members:
        name = m.filename
        path = PurePosixPath(name)
        if (
            name.startswith(("/", "\\"))
            or "\\" in name
            or ".." in path.parts
            or (path.parts and ":" in path.parts[0])
        ):
            raise UserError(f"unsafe path in zip: {name!r}")
        if stat.S_ISLNK(m.external_attr >> 16):
            raise UserError(f"the zip contains a symbolic link: {name!r}")
        folders.add(path.parts[0])
        rel = path.parts[1:]
        if m.is_dir():
            if rel not in ((), ("prompts",)):
                raise UserError(f"unexpected folder in zip: {name!r}")
            continue
        ok = (len(rel) == 1 and rel[0] in ZIP_ALLOWED_FILES) or (
            len(rel) == 2 and rel[0] == "prompts" and PROMPT_FILE_RE.match(rel[1])
        )
        if not ok:
            raise UserError(
                f"unexpected file in zip: {name!r} (a voice zip holds voice.json, ref.wav and prompts/*)"
            )
    if len(folders) != 1:
        raise UserError(f"the zip must hold exactly one voice folder, found: {', '.join(sorted(folders))}")
    return folders.pop(), members
