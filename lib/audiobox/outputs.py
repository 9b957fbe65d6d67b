"""Run directories and their metadata: every run gets its own folder, nothing is overwritten."""

from __future__ import annotations

import platform
import re
import secrets
from datetime import datetime
from pathlib import Path

from audiobox.audio import OUTPUT_FORMATS, write_audio
from audiobox.errors import UserError
from audiobox.fsutil import atomic_write_bytes, atomic_write_json, atomic_write_text

TAKES_META_SCHEMA_VERSION = 1


def safe_name(value: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", value.lower()).strip("-.") or "run"


def new_run_dir(out_root: Path, voice_id: str) -> Path:
    """<out>/<voice_id>/<YYYYmmdd-HHMMSS>-<random>: unique even for runs started in the same second."""
    parent = Path(out_root) / safe_name(voice_id)
    parent.mkdir(parents=True, exist_ok=True)
    for _ in range(20):
        run_dir = parent / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise UserError(f"cannot create a new run directory under {parent}")


def exact_run_dir(path: Path) -> Path:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"--out-exact {path} exists and is not a directory")
    path.mkdir(parents=True, exist_ok=True)
    return path


def named_output_format(path: Path) -> str:
    """The audio format of a named output file (`-o speech.mp3`), checked before any work is done."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in OUTPUT_FORMATS:
        raise UserError(
            f"-o {path}: name the file with one of the extensions {', '.join('.' + f for f in OUTPUT_FORMATS)}"
        )
    if path.is_dir():
        raise UserError(f"-o {path} is a directory; name a file (e.g. {path / ('speech.' + fmt)})")
    return fmt


def copy_to_named_output(take: Path, dest: Path) -> Path:
    """Write the chosen take to the file the user named too (atomically; the run folder keeps its copy)."""
    atomic_write_bytes(Path(dest), Path(take).read_bytes())
    return Path(dest)


def take_filename(index: int, fmt: str) -> str:
    return f"take_{index:02d}.{fmt}"


def write_take_audio(run_dir: Path, index: int, samples, sample_rate: int, fmt: str) -> Path:
    return write_audio(run_dir / take_filename(index, fmt), samples, sample_rate, fmt)


def write_run_meta(run_dir: Path, meta: dict, text: str | None = None) -> Path:
    if text is not None:
        atomic_write_text(run_dir / "text.txt", text + "\n")
    path = run_dir / "takes.meta.json"
    atomic_write_json(path, {"schema_version": TAKES_META_SCHEMA_VERSION, **meta})
    return path


def environment_info() -> dict:
    from importlib import metadata

    versions = {}
    for dist in ("qwen-tts", "torch", "transformers"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {"python": platform.python_version(), "packages": versions}
