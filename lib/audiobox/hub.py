"""The model hub: whether it can be reached, where its cache is, and fetching files from it.

The one module that reads HF_ENDPOINT, HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) and HF_HOME /
HF_HUB_CACHE, with the meaning huggingface_hub gives them. Every model loader (Qwen3-TTS,
faster-whisper, Demucs) asks here before it downloads, so a mirror set with HF_ENDPOINT serves all
of them, HF_HUB_OFFLINE=1 stops all of them, and a missing model gets the same advice everywhere:
the `voice-models download` command and the real cache path.

Downloads pass the endpoint explicitly, so they follow HF_ENDPOINT even when huggingface_hub was
imported before it was set. No heavy import at module level.
"""

from __future__ import annotations

import os
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from audiobox.errors import UserError
from audiobox.progress import ProgressFn, Reporter

DEFAULT_ENDPOINT = "https://huggingface.co"
MODELS_COMMAND = "voice-models"
_TRUE_VALUES = {"1", "on", "yes", "true"}
_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def models_command() -> str:
    """`voice-models` as the user runs it (paths.app_command)."""
    from audiobox.paths import app_command

    return app_command(MODELS_COMMAND)


def endpoint() -> str:
    """The hub (or mirror) base URL: HF_ENDPOINT, else huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def is_mirror() -> bool:
    return endpoint() != DEFAULT_ENDPOINT


def offline_variable() -> str | None:
    """The variable that turns downloads off (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE), if one does."""
    for name in _OFFLINE_VARIABLES:
        if os.environ.get(name, "").strip().lower() in _TRUE_VALUES:
            return name
    return None


def offline() -> bool:
    return offline_variable() is not None


def cache_dir() -> Path:
    """The Hugging Face hub cache: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub.

    The apps point HF_HOME at <cache>/huggingface (audiobox.paths) unless the user set it.
    """
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home).expanduser() / "hub"


def _address(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    host = parsed.hostname or urlparse(DEFAULT_ENDPOINT).hostname
    return host, parsed.port or (80 if parsed.scheme == "http" else 443)


def _connects(url: str, timeout: float) -> bool:
    try:
        with socket.create_connection(_address(url), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class HubState:
    """What a download would meet right now."""

    endpoint: str
    mirror: bool
    offline_by: str | None  # the variable that forbids downloads, if one does
    reachable: bool  # False when offline (no probe is made)

    @property
    def mode(self) -> str:
        if self.offline_by:
            return "offline"
        if not self.reachable:
            return "unreachable"
        return "mirror" if self.mirror else "online"

    @property
    def can_download(self) -> bool:
        return self.mode in ("online", "mirror")

    def describe(self) -> str:
        """One phrase for messages and listings."""
        where = f"{self.endpoint} (mirror)" if self.mirror else self.endpoint
        if self.offline_by:
            return f"downloads are off ({self.offline_by}=1)"
        if not self.reachable:
            hint = "" if self.mirror else "; HF_ENDPOINT selects a mirror"
            return f"the hub at {where} cannot be reached{hint}"
        return f"downloads from {where}"


def state(timeout: float = 3.0) -> HubState:
    """Probe the hub (a TCP connect, bounded by `timeout`) unless downloads are switched off."""
    url = endpoint()
    offline_by = offline_variable()
    return HubState(
        endpoint=url,
        mirror=url != DEFAULT_ENDPOINT,
        offline_by=offline_by,
        reachable=False if offline_by else _connects(url, timeout),
    )


def not_cached_error(what: str, name: str, where: Path, why: str, alternative: str) -> UserError:
    """The one message for a model that is neither cached nor downloadable."""
    return UserError(
        f"{what} {name!r} is not in the cache ({where}) and {why}. Get it with "
        f"`{models_command()} download {name}` (where the hub or a mirror answers; the same --cache "
        f"if you gave one), "
        f"or {alternative}"
    )


def require_download(what: str, name: str, where: Path, alternative: str) -> None:
    """Fail in seconds, with the way out, when a model that is not cached cannot be downloaded."""
    current = state()
    if not current.can_download:
        raise not_cached_error(what, name, where, current.describe(), alternative)


def snapshot(
    repo_id: str,
    cache: Path | None = None,
    allow_patterns: list[str] | None = None,
    progress: ProgressFn | None = None,
) -> Path:
    """Download (or complete) a whole model repo from the hub; `progress` gets a "download" stage."""
    from huggingface_hub import snapshot_download

    cache = Path(cache or cache_dir())
    with _watched(repo_id, cache, progress, lambda: _repo_bytes(repo_id, allow_patterns)):
        return Path(
            snapshot_download(
                repo_id, cache_dir=str(cache), allow_patterns=allow_patterns, endpoint=endpoint()
            )
        )


def file(repo_id: str, filename: str, local_only: bool, progress: ProgressFn | None = None) -> Path:
    """One file of a hub repo: from the cache only, or downloaded when missing (a "download" stage)."""
    from huggingface_hub import hf_hub_download

    def fetch() -> Path:
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                cache_dir=str(cache_dir()),
                local_files_only=local_only,
                endpoint=endpoint(),
            )
        )

    if local_only:
        return fetch()
    with _watched(f"{repo_id}/{filename}", cache_dir(), progress, lambda: None, repo_id):
        return fetch()


def _repo_bytes(repo_id: str, allow_patterns: list[str] | None) -> int | None:
    """The size of the files a snapshot fetches, from the hub's listing (None when it does not say)."""
    from fnmatch import fnmatch

    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=endpoint()).model_info(repo_id, revision="main", files_metadata=True)
    except Exception:  # the size is only for the progress line: the download itself reports failures
        return None
    sizes = [
        s.size
        for s in info.siblings or []
        if allow_patterns is None or any(fnmatch(s.rfilename, pattern) for pattern in allow_patterns)
    ]
    return sum(sizes) if sizes and all(isinstance(size, int) for size in sizes) else None


@contextmanager
def _watched(what: str, cache: Path, progress: ProgressFn | None, total, repo_id: str | None = None):
    """A "download" stage for a huggingface_hub download: the bytes arriving in the repo's blob folder,
    read once a second (huggingface_hub's own bars are off meanwhile; it has no byte callback)."""
    if progress is None:
        yield
        return
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    blobs = Path(cache) / f"models--{(repo_id or what).replace('/', '--')}" / "blobs"
    reporter = Reporter(progress)
    size = total()
    reporter.start("download", size, "bytes", what)
    stop = threading.Event()

    def arrived() -> int:
        try:
            return sum(p.stat().st_size for p in blobs.iterdir() if p.is_file())
        except OSError:
            return 0

    def watch() -> None:
        while not stop.wait(1.0):
            done = arrived()
            reporter.update("download", min(done, size) if size else done)

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    watcher = threading.Thread(target=watch, name="download-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
        if not was_disabled:
            enable_progress_bars()
    reporter.end("download", f"{arrived() / 1e6:.1f} MB in the cache")
