"""The `speak` pipeline: resolve who speaks, generate the takes, write them with full metadata.

Shared by `voice-synth speak`, `voice-clone synth`, `voice-register` and batch scripts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from audiobox.errors import UserError
from audiobox.outputs import environment_info, exact_run_dir, new_run_dir, write_run_meta, write_take_audio
from audiobox.paths import Dirs, app_command
from audiobox.progress import ProgressFn
from audiobox.styles import resolve_instruct
from audiobox.tts.models import DEFAULT_MODELS
from audiobox.tts.settings import resolve_settings
from audiobox.voices import VoiceRegistry, validate_tone


@dataclass
class SpeakRequest:
    text: str
    voice: str | None = None  # registry slug
    speaker: str | None = None  # built-in CustomVoice speaker
    instruct: str | None = None
    instruct_style: str | None = None
    tone: str | None = None
    language: str = "auto"
    profile: str | None = None
    knobs: dict = field(default_factory=dict)
    greedy: bool = False
    seed: int | None = None
    variants: int = 1
    chunk: bool = False
    pause_s: float = 0.3
    model: str | None = None
    format: str = "wav"
    out_exact: Path | None = None
    app: str = "voice-synth speak"  # recorded in takes.meta.json: which app made the run


@dataclass
class SpeakResult:
    run_dir: Path
    files: list[Path]
    meta_path: Path
    meta: dict
    takes: list = field(default_factory=list)  # the Take objects, for ranking

    def to_dict(self) -> dict:
        """The run as every app's --json reports it: where the takes went and the seeds that repeat them."""
        meta = self.meta
        return {
            "run_dir": str(self.run_dir),
            "files": [str(f) for f in self.files],
            "meta": str(self.meta_path),
            "voice": meta["voice"]["id"],
            "model": meta["model"]["ref"],
            "seed": meta["seed"],
            "takes": [
                {k: t[k] for k in ("take", "file", "duration_sec", "rtf", "seed")} for t in meta["takes"]
            ],
            "timings": meta["timings"],
        }


@dataclass
class ResolvedVoice:
    voice_id: str
    kind: str  # clone | speaker
    model_kind: str  # base | custom_voice
    model_ref: str
    meta: dict
    defaults: dict
    spec_args: dict


def resolve_voice(request: SpeakRequest, registry: VoiceRegistry) -> ResolvedVoice:
    """Everything about the speaker that can be checked without loading a model."""
    if bool(request.voice) == bool(request.speaker):
        raise UserError(
            "choose exactly one of --voice (a registered voice) or --speaker (a built-in speaker)"
        )
    validate_tone(request.tone)
    instruct, instruct_source = resolve_instruct(request.instruct, request.instruct_style)
    if request.speaker:
        if request.tone:
            raise UserError("--tone needs --voice (tones belong to registered voices)")
        return ResolvedVoice(
            voice_id=f"speaker-{request.speaker.lower()}",
            kind="speaker",
            model_kind="custom_voice",
            model_ref=request.model or DEFAULT_MODELS["custom_voice"],
            meta={
                "engine": "custom_voice",
                "speaker": request.speaker,
                "instruct": instruct,
                "instruct_source": instruct_source,
                "tone": None,
            },
            defaults={},
            spec_args={"speaker": request.speaker, "instruct": instruct},
        )
    voice = registry.get(request.voice)
    if voice.engine == "custom_voice":
        cv = voice.custom_voice or {}
        tones = voice.tones()
        if request.tone and request.tone not in tones:
            raise voice.unknown_tone(request.tone)
        if instruct is None and request.tone:
            instruct, instruct_source = tones[request.tone].get("instruct"), "tone"
        if instruct is None and cv.get("instruct_default"):
            instruct, instruct_source = cv["instruct_default"], "voice_default"
        return ResolvedVoice(
            voice_id=voice.slug,
            kind="speaker",
            model_kind="custom_voice",
            model_ref=request.model or cv.get("model") or DEFAULT_MODELS["custom_voice"],
            meta={
                "engine": voice.engine,
                "slug": voice.slug,
                "speaker": cv.get("speaker"),
                "instruct": instruct,
                "instruct_source": instruct_source,
                "tone": request.tone,
            },
            defaults=voice.generation_defaults,
            spec_args={"speaker": cv.get("speaker"), "instruct": instruct},
        )
    if instruct is not None:
        raise UserError(
            f"voice {voice.slug!r} is a cloned voice: it speaks like its reference and takes no "
            f"--instruct (use --tone, or a built-in speaker)"
        )
    if not voice.prompts:
        raise UserError(
            f"voice {voice.slug!r} has no clone prompt yet: build one with `{app_command('voice-clone')} synth --voice {voice.slug}`"
        )
    model_ref = request.model
    if model_ref is None:  # the model of the newest prompt for this tone: the voice was built for it
        candidates = [rec for rec in voice.prompts.values() if rec.get("tone") == request.tone]
        if not candidates:
            raise voice.unknown_tone(request.tone)
        model_ref = max(candidates, key=lambda r: r.get("seq", 0)).get("model") or DEFAULT_MODELS["base"]
    return ResolvedVoice(
        voice_id=voice.slug,
        kind="clone",
        model_kind="base",
        model_ref=model_ref,
        meta={
            "engine": voice.engine,
            "slug": voice.slug,
            "tone": request.tone,
            "instruct": None,
            "instruct_source": "none",
        },
        defaults=voice.generation_defaults,
        spec_args={},
    )


@dataclass
class CheckedRequest:
    """A request with everything checked that can be checked without a model (see check_request)."""

    text: str
    resolved: ResolvedVoice
    info: object  # ModelInfo, read from config.json only
    language: str
    spec_args: dict
    prompt_id: str | None  # the clone prompt chosen (loaded after the model, checked against it here)


def check_request(
    request: SpeakRequest, registry: VoiceRegistry, infos: dict | None = None
) -> CheckedRequest:
    """Every check a speak request allows before a model loads: voice, tone, model type, what
    `check_speech` checks, speaker, the prompt's model. Shared by speak and batch --check.
    `infos` caches ModelInfo by model ref across many requests."""
    from audiobox.tts.models import read_model_info, require_type

    resolved = resolve_voice(request, registry)
    infos = {} if infos is None else infos
    if resolved.model_ref not in infos:
        infos[resolved.model_ref] = read_model_info(resolved.model_ref)
    info = infos[resolved.model_ref]
    purpose = (
        "speaking with a cloned voice" if resolved.kind == "clone" else "speaking with a built-in speaker"
    )
    require_type(info, resolved.model_kind, purpose)
    text, language = check_speech(request, info)
    spec_args = dict(resolved.spec_args)
    prompt_id = None
    if resolved.kind == "speaker":
        spec_args["speaker"] = info.canonical_speaker(spec_args["speaker"])
    else:
        voice, prompt_id = registry.choose_prompt(request.voice, info, request.tone)
        _check_prompt_model(voice.dir / "prompts" / f"{prompt_id}.json", info, voice.slug)
    return CheckedRequest(text, resolved, info, language, spec_args, prompt_id)


def check_speech(request: SpeakRequest, info) -> tuple[str, str]:
    """The checks of what to say, for any app that speaks (speak, batch, voice-clone synth,
    voice-register): text, variants, --out-exact, generation settings, and the language against the
    model's config (`info`: ModelInfo, no weights). Returns (clean text, language)."""
    from audiobox.languages import normalize_language
    from audiobox.tts.text import clean_text

    text = clean_text(request.text)
    if not 1 <= request.variants <= 16:
        raise UserError("--variants must be between 1 and 16")
    if (
        request.out_exact is not None
        and Path(request.out_exact).exists()
        and not Path(request.out_exact).is_dir()
    ):
        raise UserError(f"--out-exact {request.out_exact} exists and is not a directory")
    resolve_settings(request.profile, None, request.greedy, **request.knobs)
    return text, normalize_language(request.language, info.languages)


def _check_prompt_model(meta_path: Path, info, slug: str) -> None:
    """The prompt's model, from its small .json: a damaged prompt is left to fail when loaded."""
    import json

    from audiobox.tts.prompts import check_prompt_model

    try:
        built = json.loads(meta_path.read_text(encoding="utf-8")).get("model") or {}
    except (OSError, ValueError, AttributeError):
        return
    check_prompt_model(built, info, slug)


def prepare_speak(request: SpeakRequest, dirs: Dirs, pool) -> tuple:
    """(text, resolved voice, settings, their provenance, synthesizer, VoiceSpec, prompt id):
    everything before generation, shared by whole takes and ``speak --stream``."""
    from audiobox.tts.synth import VoiceSpec

    registry = VoiceRegistry(dirs.voices)
    checked = check_request(request, registry)
    text, resolved, prompt_id = checked.text, checked.resolved, checked.prompt_id
    settings, settings_source = resolve_settings(
        request.profile, resolved.defaults, request.greedy, **request.knobs
    )
    synth = pool.synthesizer(resolved.model_ref, resolved.model_kind)
    if resolved.kind == "clone":
        prompt, prompt_id = registry.load_prompt(request.voice, synth.info, request.tone)
        spec = VoiceSpec.clone(prompt)
    else:
        spec = VoiceSpec.builtin(**checked.spec_args)
    return text, resolved, settings, settings_source, synth, spec, prompt_id


def run_speak(request: SpeakRequest, dirs: Dirs, pool, progress: ProgressFn | None = None) -> SpeakResult:
    """Validate, load (via the pool), generate and write one run; returns where it went."""
    started = time.perf_counter()
    text, resolved, settings, settings_source, synth, spec, prompt_id = prepare_speak(request, dirs, pool)
    return speak_with(
        synth,
        spec,
        request,
        dirs,
        text=text,
        voice_meta={"id": resolved.voice_id, "prompt_id": prompt_id, **resolved.meta},
        settings=settings,
        settings_source=settings_source,
        started=started,
        progress=progress,
    )


def speak_with(
    synth,
    spec,
    request: SpeakRequest,
    dirs: Dirs,
    *,
    text: str,
    voice_meta: dict,
    settings,
    settings_source: dict,
    started: float,
    timings: dict | None = None,
    extra: dict | None = None,
    progress: ProgressFn | None = None,
) -> SpeakResult:
    """The one render path for whole takes: speak `text` (cleaned) with a loaded model and voice,
    write the takes and takes.meta.json (app: `request.app`).

    `voice_meta["id"]` names the run folder; `timings` and `extra` add the caller's own stages
    (voice-clone: reference and prompt) to takes.meta.json.
    """
    synth_started = time.perf_counter()
    takes = synth.speak(
        text,
        spec,
        request.language,
        settings,
        request.variants,
        request.seed,
        request.chunk,
        request.pause_s,
        progress=progress,
    )
    synth_sec = time.perf_counter() - synth_started
    run_dir = (
        exact_run_dir(request.out_exact) if request.out_exact else new_run_dir(dirs.work, voice_meta["id"])
    )
    files, meta_path, meta = write_run(
        run_dir,
        app=request.app,
        synth=synth,
        takes=takes,
        voice_meta=voice_meta,
        language=request.language,
        text=text,
        chunked=request.chunk,
        settings=settings,
        settings_source=settings_source,
        variants=request.variants,
        fmt=request.format,
        timings={**(timings or {}), "model_load_sec": synth.loaded.load_sec, "synth_sec": synth_sec},
        started=started,
        extra=extra,
    )
    return SpeakResult(run_dir=run_dir, files=files, meta_path=meta_path, meta=meta, takes=takes)


def write_run(
    run_dir: Path,
    *,
    app: str,
    synth,
    takes: list,
    voice_meta: dict,
    language: str,
    text: str,
    chunked: bool,
    settings,
    settings_source: dict,
    variants: int,
    fmt: str,
    timings: dict,
    started: float,
    extra: dict | None = None,
    files: list[Path] | None = None,
) -> tuple[list[Path], Path, dict]:
    """Write the takes and a complete takes.meta.json (model, seed, settings, timings, RTF per take).

    ``files``: the takes' audio is already written there (a streamed take)."""
    if files is None:
        files = [write_take_audio(run_dir, t.index, t.samples, t.sample_rate, fmt) for t in takes]
    audio_sec = sum(t.duration for t in takes)
    meta = {
        "app": app,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "voice": voice_meta,
        **(extra or {}),
        "model": {
            "ref": synth.info.ref,
            "type": synth.info.model_type,
            "device": synth.loaded.device,
            "dtype": synth.loaded.dtype,
            "attention": synth.loaded.attention,
            "backend": synth.backend_name,
            "weights": synth.loaded.weights,
        },
        "language": language,
        "text": text,
        "chunked": chunked,
        "generation": {**settings.to_dict(), "source": settings_source},
        "seed": takes[0].seed,
        "variants": variants,
        "format": fmt,
        "takes": [
            {
                "take": t.index,
                "file": f.name,
                "seed": t.seed,
                "duration_sec": round(t.duration, 3),
                "sample_rate": t.sample_rate,
                "synth_sec": round(t.synth_sec, 3),
                "rtf": round(t.rtf, 3),
                "chunks": t.chunks,
            }
            for t, f in zip(takes, files)
        ],
        "timings": {
            **{k: round(v, 3) for k, v in timings.items()},
            "total_sec": round(time.perf_counter() - started, 3),
            "rtf": round(timings["synth_sec"] / audio_sec, 3) if audio_sec else None,
        },
        "environment": environment_info(),
    }
    return files, write_run_meta(run_dir, meta, text), meta
