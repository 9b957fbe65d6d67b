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
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from audiobox.errors import UserError

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


def snapshot(repo_id: str, cache: Path | None = None, allow_patterns: list[str] | None = None) -> Path:
    """Download (or complete) a whole model repo from the hub; huggingface_hub shows the progress."""
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(
            repo_id,
            cache_dir=str(cache or cache_dir()),
            allow_patterns=allow_patterns,
            endpoint=endpoint(),
        )
    )


def file(repo_id: str, filename: str, local_only: bool) -> Path:
    """One file of a hub repo: from the cache only, or downloaded when missing."""
    from huggingface_hub import hf_hub_download

    return Path(
        hf_hub_download(
            repo_id, filename, cache_dir=str(cache_dir()), local_files_only=local_only, endpoint=endpoint()
        )
    )
