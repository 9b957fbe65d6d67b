"""Where the cache and the outputs live.

Precedence: explicit flag > environment (AUDIOBOX_CACHE / AUDIOBOX_WORK; the Docker images set them
to the /cache and /work mounts) > ./cache and ./work of the checkout (or of the current directory
when installed with pip).
Hugging Face and torch caches are pointed inside the cache dir so one mount holds every model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def app_command(app: str) -> str:
    """How the user starts `app`, for messages that name a next step: through the launcher that
    started this process (./run and ./run-direct export AUDIOBOX_LAUNCHER), else the console script
    that `pip install` puts on PATH."""
    launcher = os.environ.get("AUDIOBOX_LAUNCHER", "").strip()
    return f"{launcher} {app}" if launcher else app


def _default_dir(env_var: str, checkout_name: str) -> Path:
    if os.environ.get(env_var):
        return Path(os.environ[env_var]).expanduser()
    base = REPO_ROOT if (REPO_ROOT / "pyproject.toml").exists() else Path.cwd()
    return base / checkout_name


def default_cache_dir() -> Path:
    return _default_dir("AUDIOBOX_CACHE", "cache")


def default_work_dir() -> Path:
    return _default_dir("AUDIOBOX_WORK", "work")


@dataclass(frozen=True)
class Dirs:
    cache: Path
    work: Path

    @property
    def voices(self) -> Path:
        return self.cache / "voices"

    @property
    def huggingface(self) -> Path:
        return self.cache / "huggingface"

    def stage(self, name: str) -> Path:
        """A per-feature cache area, e.g. stage('refs') -> <cache>/refs."""
        return self.cache / name


def resolve_dirs(cache: str | Path | None = None, out: str | Path | None = None) -> Dirs:
    dirs = Dirs(
        cache=Path(cache).expanduser() if cache else default_cache_dir(),
        work=Path(out).expanduser() if out else default_work_dir(),
    )
    wire_model_caches(dirs.cache)
    return dirs


def wire_model_caches(cache: Path) -> None:
    """Point HF and torch hub caches into the cache dir unless the user already chose."""
    os.environ.setdefault("HF_HOME", str(cache / "huggingface"))
    os.environ.setdefault("TORCH_HOME", str(cache / "torch"))
