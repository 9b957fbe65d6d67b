"""Which models each app needs, whether they are in the cache, and fetching them (`voice-models`).

Each family keeps its own cache rules (Qwen3-TTS and Demucs in the Hugging Face cache, Whisper in
<cache>/asr first); this module only asks the family's module, so `voice-models list` shows
exactly what the apps would find, and `voice-models download` puts files where the apps look.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from audiobox import hub
from audiobox.errors import UserError, did_you_mean
from audiobox.paths import Dirs
from audiobox.progress import ProgressFn
from audiobox.tts.models import DEFAULT_MODELS, KNOWN_MODELS, MODEL_TYPE_LABELS, cached_snapshot

APPS = ("voice-synth", "voice-clone", "voice-split", "voice-register")
WHISPER_DEFAULT = "small"  # audiobox.asr.DEFAULT_ASR_MODEL (not imported: it pulls in numpy)
DEMUCS_DEFAULT = "htdemucs"  # audiobox.separate.DEFAULT_SEPARATOR_MODEL


@dataclass(frozen=True)
class CatalogModel:
    name: str  # what `voice-models download NAME` and the apps' model flags take
    family: str  # qwen3-tts | whisper | demucs
    purpose: str
    apps: tuple[str, ...]  # the apps that load it (with their default flags unless `default` is False)
    default: bool  # fetched by a plain `voice-models download`


def _qwen_entry(ref: str) -> CatalogModel:
    kind = KNOWN_MODELS[ref]
    is_default = DEFAULT_MODELS[kind] == ref
    apps = {
        "base": ("voice-clone", "voice-register", "voice-synth"),
        "custom_voice": ("voice-synth",),
        "voice_design": ("voice-synth",),
    }[kind]
    purpose = MODEL_TYPE_LABELS[kind] + (
        {"base": "", "custom_voice": ": speak --speaker", "voice_design": ": design-voice"}[kind]
        if is_default
        else ", larger (pass --model)"
    )
    # VoiceDesign is only for design-voice: not part of the plain download
    return CatalogModel(ref, "qwen3-tts", purpose, apps, is_default and kind != "voice_design")


CATALOG: tuple[CatalogModel, ...] = (
    *(_qwen_entry(ref) for ref in KNOWN_MODELS),
    CatalogModel(
        WHISPER_DEFAULT,
        "whisper",
        "transcripts of references; take checks (--qa, --select-best)",
        ("voice-clone", "voice-register", "voice-synth"),
        True,
    ),
    CatalogModel(DEMUCS_DEFAULT, "demucs", "vocals separation", ("voice-split", "voice-register"), True),
)


def find(name: str) -> CatalogModel:
    """A catalogue entry, or any other faster-whisper size / Demucs model named on the command line."""
    for model in CATALOG:
        if model.name == name or model.name.lower() == name.strip().lower():
            return model
    from audiobox.asr import whisper_repo_id

    try:
        whisper_repo_id(name)
        if "/" not in name or "whisper" in name.lower():
            return CatalogModel(name, "whisper", "speech recognition (pass --asr-model)", (), False)
    except UserError:
        pass
    if name.startswith(("htdemucs", "hdemucs", "mdx", "demucs")):
        return CatalogModel(name, "demucs", "vocals separation (pass --separator-model)", (), False)
    raise UserError(
        f"unknown model {name!r}{did_you_mean(name, [m.name for m in CATALOG])}; "
        f"`{hub.models_command()} list` shows the models the apps use"
    )


def select(names: list[str], app: str | None, everything: bool) -> list[CatalogModel]:
    """The models a download asks for: named ones, an app's defaults, all, or every app's defaults."""
    if names:
        return list(dict.fromkeys(find(name) for name in names))
    if everything:
        return list(CATALOG)
    if app is not None and app not in APPS:
        raise UserError(f"unknown app {app!r}{did_you_mean(app, APPS)} (choose from {', '.join(APPS)})")
    return [m for m in CATALOG if m.default and (app is None or app in m.apps)]


def location(model: CatalogModel, dirs: Dirs) -> Path:
    """Where the apps look for (and download) this model."""
    return dirs.stage("asr") if model.family == "whisper" else hub.cache_dir()


def cached(model: CatalogModel, dirs: Dirs) -> Path | None:
    """The local copy the apps would load, or None."""
    if model.family == "qwen3-tts":
        return cached_snapshot(model.name)
    if model.family == "whisper":
        from audiobox.asr import cached_model

        return cached_model(model.name, dirs.stage("asr"))
    from audiobox.separate import hub_model_files

    files = hub_model_files(model.name, download=False)
    return files[0].parent if files else None


def download(model: CatalogModel, dirs: Dirs, progress: ProgressFn | None = None) -> Path:
    """Fetch what is missing; `progress` gets a "download" stage (audiobox.progress) per fetch."""
    found = cached(model, dirs)
    if found is not None:
        return found
    state = hub.state()
    if not state.can_download:
        way_out = (
            f"unset {state.offline_by}"
            if state.offline_by
            else "check the network, or point HF_ENDPOINT at a mirror you can reach"
        )
        raise UserError(
            f"cannot download {model.name}: {state.describe()} ({way_out}; the cache is {location(model, dirs)})"
        )
    if model.family == "qwen3-tts":
        try:
            return hub.snapshot(model.name, progress=progress)
        except Exception as exc:
            raise UserError(f"could not download {model.name}: {type(exc).__name__}: {exc}") from None
    if model.family == "whisper":
        from audiobox.asr import download as download_whisper

        return download_whisper(model.name, dirs.stage("asr"), progress)
    from audiobox.separate import hub_model_files

    return hub_model_files(model.name, download=True, progress=progress)[0].parent
