"""The named voice registry: <cache>/voices/<slug>/{voice.json, ref.wav, prompts/*.safetensors+json}.

Every write happens under one registry lock and lands atomically (temp file or staging dir, then
rename), so concurrent writers or a killed process never leave a half-written voice; what a killed
writer left (staging folders, temp files, a voice moved aside by an interrupted replace) is cleaned
or put back the next time the registry is opened. Stdlib + filelock only: listing voices stays fast.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from audiobox.errors import UserError, did_you_mean
from audiobox.fsutil import (
    STAGING_PREFIX,
    TEMP_PREFIX,
    TRASH_PREFIX,
    atomic_path,
    atomic_write_json,
    clean_stale,
    staging_dir,
    write_new_file,
)
from audiobox.paths import app_command

VOICE_SCHEMA_VERSION = 1
ENGINES = ("clone_prompt", "custom_voice", "designed_clone")
# every name check is a full match: `re.match(...$)` would also accept a trailing newline
SLUG_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
TONE_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
PROMPT_ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,110}")
PROMPT_FILE_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,110}\.(safetensors|json)")
ZIP_ALLOWED_FILES = {"voice.json", "ref.wav", "source.wav"}
DELETED_PREFIX = ".deleted-"
ZIP_MAX_ENTRIES = 512
ZIP_MAX_TOTAL_BYTES = 512 * 1024 * 1024
LOCK_TIMEOUT_S = 60
SOURCE_COPY_MAX_S = 180.0  # source.wav keeps the whole recording up to this long, else the reference


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def validate_slug(slug: str) -> str:
    """Lower-case letters, digits and inner dashes, 1-64 chars: safe as a folder name anywhere."""
    if not isinstance(slug, str) or not SLUG_RE.fullmatch(slug):
        raise UserError(
            f"invalid voice name {slug!r}: use 1-64 lower-case letters, digits and dashes "
            f"(no leading/trailing dash), e.g. 'narrator-en'"
        )
    return slug


def already_exists(slug: str, detail: str = "", other_name: str = "pick another name") -> UserError:
    """THE "voice already exists" message: every app replaces a voice with --force."""
    return UserError(f"voice {slug!r} already exists{detail} (use --force to replace it, or {other_name})")


def lookup_slug(name: str) -> str:
    """The registry key of a voice name as a user types it: voice names are case-insensitive."""
    return name.strip().lower() if isinstance(name, str) else name


def validate_tone(tone: str | None) -> str | None:
    if tone is not None and (not isinstance(tone, str) or not TONE_RE.fullmatch(tone)):
        raise UserError(f"invalid tone {tone!r}: use lower-case letters, digits, '-' or '_' (max 32)")
    return tone


# -- records: every voice.json is built from these (VoiceRegistry.create adds the common fields) --------


def ref_record(
    duration_sec: float, sample_rate: int, transcript: str | None, language: str | None, **details
) -> dict:
    """voice.json "ref": ref.wav's length and rate, what is said in it, and how it was chosen."""
    return {
        "wav": "ref.wav",
        "duration_sec": round(duration_sec, 3),
        "sample_rate": sample_rate,
        "transcript": transcript,
        "language": None if language in (None, "auto") else language,
        **details,
    }


def clone_record(
    *,
    ref: dict,
    source: dict,
    display_name: str | None = None,
    description: str = "",
    engine: str = "clone_prompt",
) -> dict:
    """A voice that speaks through clone prompts built from its ref.wav (cloned or designed)."""
    return {
        "engine": engine,
        "display_name": display_name,
        "description": description,
        "ref": ref,
        "source": source,
    }


def builtin_record(
    *,
    custom_voice: dict,
    tones: dict,
    source: dict,
    display_name: str | None = None,
    description: str = "",
) -> dict:
    """A voice that is one of a CustomVoice model's built-in speakers (with default instruct and tones)."""
    return {
        "engine": "custom_voice",
        "display_name": display_name,
        "description": description,
        "custom_voice": custom_voice,
        "tones": tones,
        "source": source,
    }


def reference_files(ref, recording=None) -> Callable[[Path], None]:
    """`write_files` for VoiceRegistry.create: ref.wav, and source.wav by the one rule.

    source.wav is what a later re-cut starts from (`voice-clone synth --voice SLUG --ref-start ...`):
    the recording the reference was cut from (an Audio or a file) when it is at most SOURCE_COPY_MAX_S
    long, else the reference itself. A reference prepared by audiobox.refprep passes its decoded input
    (`PreparedRef.registry_files()`): voice-clone's --ref-audio file, voice-register's source with
    --ref-start/--ref-end, else its split's reference clip; voice-split's clip is its own recording.
    """

    def write(staging: Path) -> None:
        from audiobox.audio import load_audio, write_audio

        write_audio(staging / "ref.wav", ref.samples, ref.sample_rate, "wav")
        source = recording
        if isinstance(source, (str, Path)):
            import soundfile as sf

            source = load_audio(source) if sf.info(str(source)).duration <= SOURCE_COPY_MAX_S else None
        if source is None or source.duration > SOURCE_COPY_MAX_S:
            source = ref
        write_audio(staging / "source.wav", source.samples, source.sample_rate, "wav")

    return write


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

    @property
    def source_wav(self) -> Path | None:
        """The recording a new reference is cut from: source.wav, else (older voices) ref.wav."""
        path = self.dir / "source.wav"
        return path if path.is_file() else self.ref_wav

    def tones(self) -> dict[str, dict]:
        """tone -> {'instruct': ...} (custom voices) or {'prompts': [ids]} (clone voices)."""
        out = {name: dict(v) for name, v in (self.data.get("tones") or {}).items()}
        for pid, rec in self.prompts.items():
            if rec.get("tone"):
                out.setdefault(rec["tone"], {}).setdefault("prompts", []).append(pid)
        return out

    def unknown_tone(self, tone: str | None) -> UserError:
        """The error for a tone this voice does not have (a "did you mean" for a typo)."""
        names = sorted(self.tones())
        if tone is None:
            return UserError(
                f"voice {self.slug!r} has prompts for tones only ({', '.join(names)}): pass --tone"
            )
        return UserError(
            f"voice {self.slug!r} has no tone {tone!r}{did_you_mean(tone, names)} (tones: {', '.join(names) or 'none'})"
        )

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
        # the id names the files on disk: it must be a plain file name, and the file its own
        if not PROMPT_ID_RE.fullmatch(pid):
            raise UserError(f"{where} is corrupted (bad prompt id {pid!r})")
        if not isinstance(rec, dict) or rec.get("file") != f"prompts/{pid}.safetensors":
            raise UserError(f"{where} is corrupted (prompt {pid!r} has a bad file entry)")
        if rec.get("tone") is not None and not TONE_RE.fullmatch(str(rec["tone"])):
            raise UserError(f"{where} is corrupted (prompt {pid!r} has a bad tone)")
    for tone in data.get("tones") or {}:
        if not TONE_RE.fullmatch(tone):
            raise UserError(f"{where} is corrupted (bad tone name {tone!r})")
    ref = data.get("ref")
    if ref is not None and (not isinstance(ref, dict) or ref.get("wav") not in ("ref.wav",)):
        raise UserError(f"{where} is corrupted (bad 'ref' entry)")
    return data


class VoiceRegistry:
    def __init__(self, root: Path):
        self.root = Path(root)

    # -- reading ---------------------------------------------------------------------------
    def voice_dir(self, slug: str) -> Path:
        return self.root / validate_slug(lookup_slug(slug))

    def exists(self, slug: str) -> bool:
        return (self.voice_dir(slug) / "voice.json").is_file()

    def ensure_available(
        self, slug: str, replace: bool = False, other_name: str = "pick another name"
    ) -> str:
        """The one "may a voice be written under this name" check: a valid name, free unless replacing.

        `other_name` says how this command takes another name (import-voice: --as NEW_NAME)."""
        validate_slug(slug)
        if not replace and (self.exists(slug) or self.voice_dir(slug).exists()):
            raise already_exists(slug, other_name=other_name)
        return slug

    def get(self, slug: str) -> Voice:
        """A voice by name; names are case-insensitive (`--voice Narrator` finds narrator)."""
        path = self.voice_dir(slug) / "voice.json"
        slug = lookup_slug(slug)
        if not path.is_file():
            self.recover()
        if not path.is_file():
            names = self._slugs_on_disk()
            raise UserError(
                f"no voice named {slug!r}{did_you_mean(slug, names)} in {self.root}"
                + (f" (known: {', '.join(names[:20])})" if names else " (the registry is empty)")
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
        self.recover()
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            if not SLUG_RE.fullmatch(entry.name):
                problems.append(f"folder {entry.name!r} in {self.root} is not a valid voice name (skipped)")
            elif not (entry / "voice.json").is_file():
                problems.append(f"voice folder {entry} has no voice.json (an incomplete voice: delete it)")
            else:
                try:
                    voices.append(self.get(entry.name))
                except UserError as exc:
                    problems.append(str(exc))
        return voices, problems

    def _slugs_on_disk(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            e.name for e in self.root.iterdir() if SLUG_RE.fullmatch(e.name) and (e / "voice.json").is_file()
        )

    def recover(self) -> None:
        """Finish what a killed writer left: put back a voice an interrupted replace had moved aside,
        and remove staging folders, temp files and trash. Runs only when the lock is free right now
        (a live writer holding it will clean up after itself), so reading never waits."""
        if not self.root.is_dir() or not any(
            e.name.startswith(".") and e.name != ".registry.lock" for e in self.root.iterdir()
        ):
            return
        from filelock import Timeout

        try:
            with self.lock(timeout=0):
                self._recover_locked()
        except Timeout:
            pass

    def _recover_locked(self) -> None:
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith(TRASH_PREFIX) and entry.is_dir():
                # .trash-<slug>-<hex>: the old copy of a voice being replaced
                slug = entry.name[len(TRASH_PREFIX) :].rsplit("-", 1)[0]
                if SLUG_RE.fullmatch(slug) and not (self.root / slug).exists():
                    os.replace(entry, self.root / slug)  # killed between the two renames: roll back
                else:
                    shutil.rmtree(entry, ignore_errors=True)  # the replace finished: drop the old copy
            elif entry.name.startswith(DELETED_PREFIX) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
        clean_stale(self.root, (STAGING_PREFIX, TEMP_PREFIX))
        for voice_dir in self.root.iterdir():
            if SLUG_RE.fullmatch(voice_dir.name) and voice_dir.is_dir():
                clean_stale(voice_dir, (TEMP_PREFIX,))
                clean_stale(voice_dir / "prompts", (TEMP_PREFIX,))

    # -- writing ---------------------------------------------------------------------------
    def lock(self, timeout: float = LOCK_TIMEOUT_S):
        from filelock import FileLock

        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / ".registry.lock"), timeout=timeout)

    def _install(self, staging: Path, slug: str, replace: bool) -> None:
        """Swap a fully written staging dir into place (caller holds the lock).

        A replace moves the old voice to .trash-<slug>-*, then the new one in: a kill between the two
        renames leaves no <slug>, and recover() moves the old voice back."""
        target = self.voice_dir(slug)
        trash = None
        if target.exists():
            self.ensure_available(slug, replace)
            trash = self.root / f"{TRASH_PREFIX}{slug}-{uuid.uuid4().hex[:8]}"
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
        record: dict = {
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
        record["display_name"] = record["display_name"] or slug
        _check_voice_data(record, f"new voice {slug!r}")
        with self.lock():
            self._recover_locked()
            self.ensure_available(slug, replace)
            with staging_dir(self.root) as staging:
                if write_files:
                    write_files(staging)
                for prompt, tone, extra in prompts:
                    _store_prompt(record, staging, prompt, tone, extra)
                atomic_write_json(staging / "voice.json", record)
                self._install(staging, slug, replace)
        return self.get(slug)

    def update(self, slug: str, mutate: Callable[[dict, Path], None]) -> Voice:
        """Apply `mutate(record, voice_dir)` under the lock; it may write new files first.

        voice.json is rewritten last and atomically, so it never points at a file not yet written.
        """
        with self.lock():
            self._recover_locked()
            voice = self.get(slug)
            record = json.loads(json.dumps(voice.data))
            mutate(record, voice.dir)
            record["updated_at"] = now_iso()
            _check_voice_data(record, f"voice {slug!r}")
            atomic_write_json(voice.dir / "voice.json", record)
        return self.get(slug)

    def save_generation_defaults(self, slug: str, defaults: dict) -> Voice:
        """Merge `defaults` (profile and knobs: what speak uses when not told) into the voice's own."""

        def merge(record: dict, _dir: Path) -> None:
            record["generation_defaults"] = {**record.get("generation_defaults", {}), **defaults}

        return self.update(slug, merge)

    def add_prompt(self, slug: str, prompt, tone: str | None = None, extra: dict | None = None) -> str:
        """Store a ClonePrompt as prompts/<model_tag>_<mode>[_<tone>]_v<N> and index it."""
        added: list[str] = []
        self.update(
            slug,
            lambda record, voice_dir: added.append(_store_prompt(record, voice_dir, prompt, tone, extra)),
        )
        return added[0]

    def replace_reference(self, slug: str, ref, ref_info: dict, re_cut: dict) -> list[str]:
        """Give a voice a new reference (Audio `ref`, its voice.json "ref" `ref_info`).

        The prompts built from the old reference no longer match it: they are deleted, and their
        ids returned. `re_cut` records where the new reference came from (under "source").
        """
        from audiobox.audio import write_audio

        removed: list[str] = []

        def mutate(record: dict, voice_dir: Path) -> None:
            write_audio(voice_dir / "ref.wav", ref.samples, ref.sample_rate, "wav")  # atomic
            for pid in list(record.get("prompts") or {}):
                removed.append(pid)
                record["prompts"].pop(pid)
                for suffix in (".safetensors", ".json"):  # appended: ids hold dots (...-0.6b-base_icl_v1)
                    (voice_dir / "prompts" / f"{pid}{suffix}").unlink(missing_ok=True)
            record["ref"] = ref_info
            record["source"] = {**(record.get("source") or {}), "re_cut": re_cut}

        self.update(slug, mutate)
        return removed

    def load_prompt(self, slug: str, model_info, tone: str | None = None):
        from audiobox.tts.prompts import ClonePrompt

        voice, pid = self.choose_prompt(slug, model_info, tone)
        try:
            prompt = ClonePrompt.load(voice.dir / "prompts" / pid)
        except (
            UserError
        ) as exc:  # e.g. a prompt an older version saved under a cut name ('...-0.safetensors')
            raise UserError(
                f"{exc}; build it again with `{app_command('voice-clone')} synth --voice {voice.slug} "
                f"--model {model_info.ref}" + (f" --tone {tone}" if tone else "") + " --refresh`"
            ) from exc
        prompt.check_compatible(model_info, voice.slug)
        return prompt, pid

    def choose_prompt(self, slug: str, model_info, tone: str | None = None) -> tuple[Voice, str]:
        """The voice and the id of its newest prompt for this model and tone (UserError if none)."""
        voice = self.get(slug)
        if voice.engine == "custom_voice":
            raise UserError(f"voice {slug!r} is a built-in speaker voice; it has no clone prompt")
        pid = voice.prompt_id_for(model_info.tag, tone)
        if pid is None:
            if tone and tone not in voice.tones():
                raise voice.unknown_tone(tone)
            other = sorted({rec.get("model") for rec in voice.prompts.values() if rec.get("tone") == tone})
            if not voice.prompts:
                raise UserError(
                    f"voice {slug!r} has no clone prompt yet: build one with "
                    f"`{app_command('voice-clone')} synth --voice {slug} --model {model_info.ref}`"
                )
            raise UserError(
                f"voice {slug!r} has no prompt{' for tone ' + repr(tone) if tone else ''} built with "
                f"{model_info.ref} (built with: {', '.join(map(str, other)) or 'other tones only'}); "
                f"pass --model with one of those, or build one with `voice-clone synth --voice {slug} --model {model_info.ref}`"
            )
        return voice, pid

    def rename(self, old: str, new: str, replace: bool = False) -> Voice:
        """Give a voice another name; `replace` lets it take the name of an existing voice (which goes)."""
        validate_slug(new)
        with self.lock():
            voice = self.get(old)
            if voice.slug == new:
                raise UserError(f"voice {new!r} already has that name")
            self.ensure_available(new, replace)
            record = dict(voice.data, slug=new, updated_at=now_iso())
            if record.get("display_name") == voice.slug:
                record["display_name"] = new
            atomic_write_json(voice.dir / "voice.json", record)
            self._install(voice.dir, new, replace)
        return self.get(new)

    def delete(self, slug: str) -> None:
        with self.lock():
            voice = self.get(slug)
            trash = self.root / f"{DELETED_PREFIX}{slug}-{uuid.uuid4().hex[:8]}"
            os.replace(voice.dir, trash)
            shutil.rmtree(trash, ignore_errors=True)

    # -- exchange --------------------------------------------------------------------------
    def export_zip(self, slug: str, dest: Path, force: bool = False) -> Path:
        """Write <slug>/{voice.json, ref.wav, source.wav, prompts/*} to a zip: exactly the files the
        record lists, with host paths (source files, clip folders, local model dirs) cut to names."""
        voice = self.get(slug)
        dest = Path(dest)
        if dest.exists() and not force:
            raise UserError(f"{dest} already exists (use --force to overwrite)")
        files = _listed_files(voice.data)
        if (voice.dir / "source.wav").is_file():
            files.append("source.wav")
        with atomic_path(dest) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"{slug}/voice.json", _json_bytes(_strip_host_paths(voice.data)))
            for rel in files:
                path = voice.dir / rel
                if not path.is_file() or path.is_symlink():
                    raise UserError(f"voice {slug!r} is incomplete: {path} is missing")
                if rel.startswith("prompts/") and rel.endswith(".json"):
                    meta = json.loads(path.read_text(encoding="utf-8"))
                    zf.writestr(f"{slug}/{rel}", _json_bytes(_strip_host_paths(meta)))
                else:
                    zf.write(path, f"{slug}/{rel}")
        return dest

    def import_zip(self, zip_path: Path, new_slug: str | None = None, force: bool = False) -> Voice:
        """Import a voice exported by export_zip, after checking every entry; nothing else is trusted.

        The bundle must hold exactly the files its voice.json lists (plus an optional source.wav),
        every prompt must parse as a safetensors prompt, and files are written only to paths built
        from checked names inside a fresh staging folder, never through a symlink."""
        zip_path = Path(zip_path)
        if not zip_path.is_file():
            raise UserError(f"zip file not found: {zip_path}")
        try:
            zf = zipfile.ZipFile(zip_path)
        except zipfile.BadZipFile as exc:
            raise UserError(f"{zip_path} is not a valid zip file") from exc
        with zf:
            folder, members = _check_zip_members(zf)
            slug = validate_slug(validate_slug(folder) and (new_slug or folder))
            if "voice.json" not in members:
                raise UserError(f"{zip_path}: voice.json is missing")
            try:
                data = json.loads(zf.read(members["voice.json"]).decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise UserError(f"{zip_path}: voice.json is not valid JSON") from exc
            _check_voice_data(data, f"{zip_path}:voice.json")
            if data.get("slug", folder) != folder:
                raise UserError(
                    f"{zip_path}: voice.json names the voice {data.get('slug')!r} but its folder is "
                    f"{folder!r}; refusing a bundle that contradicts itself (use --as to pick the name)"
                )
            listed = set(_listed_files(data))
            for rel in sorted(listed - set(members)):
                raise UserError(f"{zip_path}: voice.json lists {rel} but the zip does not contain it")
            for rel in sorted(set(members) - listed - {"voice.json", "source.wav"}):
                raise UserError(f"{zip_path}: {rel} is not listed in voice.json (refusing unlisted files)")
            contents = {rel: zf.read(info) for rel, info in members.items() if rel != "voice.json"}
        from audiobox.tts.prompts import check_prompt_files

        for pid in data.get("prompts") or {}:
            check_prompt_files(
                contents[f"prompts/{pid}.safetensors"],
                contents[f"prompts/{pid}.json"],
                f"{zip_path}: prompt {pid}",
            )
        data.update(slug=slug, updated_at=now_iso())
        with self.lock():
            self._recover_locked()
            self.ensure_available(slug, force, other_name="--as NEW_NAME")
            with staging_dir(self.root) as staging:
                for rel, blob in contents.items():
                    write_new_file(staging, tuple(rel.split("/")), blob)
                atomic_write_json(staging / "voice.json", data)
                self._install(staging, slug, replace=force)
        return self.get(slug)


def _store_prompt(record: dict, voice_dir: Path, prompt, tone: str | None, extra: dict | None) -> str:
    """Write the prompt files, then index them in `record`; returns the new prompt id."""
    validate_tone(tone)
    prompts = record.setdefault("prompts", {})
    tag = prompt.model.get("tag", "model")
    base = f"{tag}_{prompt.mode}" + (f"_{tone}" if tone else "")
    n = 1 + max(
        [int(m.group(1)) for pid in prompts if (m := re.fullmatch(re.escape(base) + r"_v(\d+)", pid))] or [0]
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


def _listed_files(data: dict) -> list[str]:
    """The files a voice record points at, relative to its folder."""
    files = ["ref.wav"] if data.get("ref") else []
    for pid in data.get("prompts") or {}:
        files += [f"prompts/{pid}.safetensors", f"prompts/{pid}.json"]
    return files


def _json_bytes(data) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _strip_host_paths(value):
    """A copy with every absolute path (or file:// link) cut to its last part: a bundle carries file
    names and model ids, never the user and folder names of the machine it came from."""
    if isinstance(value, dict):
        return {k: _strip_host_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_host_paths(v) for v in value]
    if isinstance(value, str) and re.match(r"(/|~|file://|[A-Za-z]:[\\/]|\\\\)", value):
        return re.split(r"[\\/]", value.rstrip("/\\"))[-1]
    return value


def _check_zip_members(zf: zipfile.ZipFile) -> tuple[str, dict[str, zipfile.ZipInfo]]:
    """The one voice folder of the zip and its files by checked relative name (dirs dropped).

    Names are taken only when already in normal form (`a/./b`, `a//b`, absolute names, `..` are
    refused, not normalised), so the name checked is the name used."""
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
    folders, files = set(), {}
    for m in members:
        name = m.filename
        parts = name[:-1].split("/") if m.is_dir() else name.split("/")
        if any(p in ("", ".", "..") or "\\" in p or ":" in p or "\0" in p for p in parts):
            raise UserError(f"unsafe path in zip: {name!r}")
        if stat.S_ISLNK(m.external_attr >> 16):
            raise UserError(f"the zip contains a symbolic link: {name!r}")
        folders.add(parts[0])
        rel = tuple(parts[1:])
        if m.is_dir():
            if rel not in ((), ("prompts",)):
                raise UserError(f"unexpected folder in zip: {name!r}")
            continue
        ok = (len(rel) == 1 and rel[0] in ZIP_ALLOWED_FILES) or (
            len(rel) == 2 and rel[0] == "prompts" and PROMPT_FILE_RE.fullmatch(rel[1])
        )
        if not ok:
            raise UserError(
                f"unexpected file in zip: {name!r} (a voice zip holds voice.json, ref.wav and prompts/*)"
            )
        if "/".join(rel) in files and files["/".join(rel)].filename.split("/")[0] == parts[0]:
            raise UserError(f"the zip holds {name!r} twice")
        files["/".join(rel)] = m
    if len(folders) != 1:
        raise UserError(f"the zip must hold exactly one voice folder, found: {', '.join(sorted(folders))}")
    return folders.pop(), files
