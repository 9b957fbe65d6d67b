"""Which Qwen3-TTS models exist, where they are cached, and what their config.json says.

Everything here reads JSON only: listing speakers or languages must not import torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from audiobox import hub
from audiobox.errors import UserError, did_you_mean

DEFAULT_MODELS = {
    "base": "Qwen/Qwen3-TTS-12Hz-0.6B-Base",
    "custom_voice": "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice",
    "voice_design": "Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign",
}
KNOWN_MODELS = {
    "Qwen/Qwen3-TTS-12Hz-0.6B-Base": "base",
    "Qwen/Qwen3-TTS-12Hz-1.7B-Base": "base",
    "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice": "custom_voice",
    "Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice": "custom_voice",
    "Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign": "voice_design",
}
# What the published CustomVoice checkpoints offer; used only when no config.json is cached.
PUBLISHED_SPEAKERS = ["aiden", "dylan", "eric", "ono_anna", "ryan", "serena", "sohee", "uncle_fu", "vivian"]
PUBLISHED_LANGUAGES = [
    "auto",
    "chinese",
    "english",
    "french",
    "german",
    "italian",
    "japanese",
    "korean",
    "portuguese",
    "russian",
    "spanish",
]
MODEL_TYPE_LABELS = {
    "base": "voice clone (Base)",
    "custom_voice": "built-in speakers (CustomVoice)",
    "voice_design": "voice design (VoiceDesign)",
}


@dataclass(frozen=True)
class ModelInfo:
    """What a checkpoint is, read from its config.json."""

    ref: str  # what the user asked for: hub id or local dir
    path: Path | None  # local dir holding config.json, None if not available
    model_type: str  # base | custom_voice | voice_design
    size: str  # e.g. 0b6, 1b7
    languages: list[str]
    speakers: list[str]
    dialect_speakers: dict[str, str] = field(default_factory=dict)
    fingerprint: dict = field(default_factory=dict)

    @property
    def tag(self) -> str:
        """A filename-safe short name, used in prompt file names."""
        base = self.ref.rstrip("/").split("/")[-1].lower()
        return "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in base) or "model"

    @property
    def supports_instruct(self) -> bool:
        # Upstream drops instruct for the 0.6B CustomVoice checkpoint.
        return self.model_type == "voice_design" or (
            self.model_type == "custom_voice" and "0b6" not in self.size
        )

    def canonical_speaker(self, name: str) -> str:
        key = name.strip().lower()
        if key not in self.speakers:
            raise UserError(
                f"unknown speaker {name!r}{did_you_mean(key, self.speakers)} for {self.ref} "
                f"(choose from {', '.join(self.speakers)})"
            )
        return key


def cached_snapshot(repo_id: str) -> Path | None:
    """The local snapshot dir of a hub model if it is fully cached (config + weights), else None."""
    repo_dir = hub.cache_dir() / ("models--" + repo_id.replace("/", "--"))
    ref_file = repo_dir / "refs" / "main"
    candidates = []
    if ref_file.is_file():
        candidates.append(repo_dir / "snapshots" / ref_file.read_text().strip())
    if (repo_dir / "snapshots").is_dir():
        candidates.extend(sorted((repo_dir / "snapshots").iterdir()))
    for snap in candidates:
        if (snap / "config.json").is_file() and any(snap.glob("*.safetensors")):
            return snap
    return None


def local_model_dir(ref: str) -> Path | None:
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"{path} is not a Qwen3-TTS model directory (no config.json)")
        return path
    if looks_like_path(ref):
        raise UserError(f"model directory not found: {ref}")
    return cached_snapshot(ref)


def looks_like_path(ref: str) -> bool:
    return ref.startswith(("/", "./", "../", "~")) or ref.count("/") != 1


def _fingerprint(config: dict) -> dict:
    talker = config.get("talker_config", {})
    return {
        "tts_model_type": config.get("tts_model_type"),
        "hidden_size": talker.get("hidden_size"),
        "num_code_groups": talker.get("num_code_groups"),
        "vocab_size": talker.get("vocab_size"),
        "spk_embed_dim": config.get("speaker_encoder_config", {}).get("enc_dim"),
    }


def read_model_info(ref: str) -> ModelInfo:
    """ModelInfo for a hub id or local dir, from config.json (or the published facts if not cached)."""
    path = local_model_dir(ref)
    if path is None:
        if ref not in KNOWN_MODELS:
            raise UserError(
                f"unknown model {ref!r}: pass a local model directory or one of {', '.join(KNOWN_MODELS)}"
            )
        kind = KNOWN_MODELS[ref]
        return ModelInfo(
            ref=ref,
            path=None,
            model_type=kind,
            size="1b7" if "1.7B" in ref else "0b6",
            languages=PUBLISHED_LANGUAGES,
            speakers=PUBLISHED_SPEAKERS if kind == "custom_voice" else [],
            dialect_speakers={"dylan": "beijing_dialect", "eric": "sichuan_dialect"}
            if kind == "custom_voice"
            else {},
        )
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path / 'config.json'}: {exc}") from exc
    talker = config.get("talker_config") or {}
    model_type = config.get("tts_model_type")
    if model_type not in MODEL_TYPE_LABELS:
        raise UserError(f"{path} is not a Qwen3-TTS checkpoint (tts_model_type={model_type!r})")
    languages = ["auto"] + sorted(k for k in (talker.get("codec_language_id") or {}) if "dialect" not in k)
    dialects = {k.lower(): v for k, v in (talker.get("spk_is_dialect") or {}).items() if v}
    return ModelInfo(
        ref=ref,
        path=path,
        model_type=model_type,
        size=str(config.get("tts_model_size", "")),
        languages=languages,
        speakers=sorted(k.lower() for k in (talker.get("spk_id") or {})),
        dialect_speakers=dialects,
        fingerprint=_fingerprint(config),
    )


def require_type(info: ModelInfo, model_type: str, purpose: str) -> None:
    if info.model_type != model_type:
        raise UserError(
            f"{info.ref} is a {MODEL_TYPE_LABELS[info.model_type]} model; {purpose} needs a "
            f"{MODEL_TYPE_LABELS[model_type]} model (e.g. {DEFAULT_MODELS[model_type]})"
        )


def cached_models() -> dict[str, str | None]:
    """Known hub models -> local snapshot path if cached, else None."""
    return {ref: (str(p) if (p := cached_snapshot(ref)) else None) for ref in KNOWN_MODELS}
