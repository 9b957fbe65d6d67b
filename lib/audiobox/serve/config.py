"""Server settings and the safety rules checked before anything starts (no torch, no FastAPI here)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from audiobox.errors import UserError
from audiobox.paths import Dirs
from audiobox.tts.models import DEFAULT_MODELS
from audiobox.tts.runtime import RuntimeOptions

API_KEY_ENV = "VOICE_SERVE_API_KEY"
OPENAI_MODEL_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")  # what OpenAI clients send by default


@dataclass(frozen=True)
class Limits:
    max_input_chars: int = 4096  # OpenAI's own limit for /v1/audio/speech
    max_body_bytes: int = 1 << 20  # JSON requests
    max_upload_bytes: int = 32 << 20  # reference clips and voice bundles
    max_variants: int = 4  # select_best


@dataclass(frozen=True)
class ServeConfig:
    dirs: Dirs
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    models: dict = field(default_factory=lambda: dict(DEFAULT_MODELS))
    runtime: RuntimeOptions = RuntimeOptions()
    limits: Limits = Limits()
    max_batch: int = 8
    first_chunk_frames: int | None = None  # None: the stream engine's defaults (tts.stream.StreamOptions)
    chunk_frames: int | None = None
    judge_asr: str = "auto"  # ASR used by select_best (audiobox.takes)
    asr_model: str = "small"  # faster-whisper model transcribing uploaded clips without a transcript

    @property
    def model_ids(self) -> list[str]:
        """What /v1/models lists and ``model`` accepts: ours, then the OpenAI names as aliases."""
        return ["qwen3-tts", self.models["base"], self.models["custom_voice"], *OPENAI_MODEL_ALIASES]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_api_key(env: dict | None = None, env_file: Path | None = None) -> str | None:
    """The bearer token from the environment, else from a ``.env`` file (never from argv)."""
    env = os.environ if env is None else env
    if env.get(API_KEY_ENV):
        return env[API_KEY_ENV].strip()
    path = env_file if env_file is not None else Path(".env")
    if not path.is_file():
        return None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        name, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and name.strip() == API_KEY_ENV:
            return value.strip().strip("'\"") or None
    return None


def check_binding(host: str, api_key: str | None, env: dict | None = None) -> None:
    """Loopback needs no key; any other address does (a server on a network must not be open).

    In the container (``./run voice-serve``) the server binds 0.0.0.0 of its own network namespace
    and Docker publishes the port; compose sets VOICE_SERVE_PUBLISHED_ON to the host address it
    publishes on, and that address is the one that decides.
    """
    env = os.environ if env is None else env
    if api_key is not None and len(api_key) < 16:
        raise UserError(f"{API_KEY_ENV} is too short: use at least 16 random characters")
    published = env.get("VOICE_SERVE_PUBLISHED_ON")
    exposed = published if (published and host in ("0.0.0.0", "::")) else host
    if not is_loopback(exposed) and not api_key:
        raise UserError(
            f"refusing to listen on {host} without an API key: set {API_KEY_ENV} in the environment "
            f"or in .env (clients then send 'Authorization: Bearer <key>'), or bind 127.0.0.1"
        )
