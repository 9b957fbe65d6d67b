"""Cloned voices: a recording (or a registered voice) -> a checked reference -> a clone prompt -> a voice.

`prepare` chooses, checks and transcribes the reference (no TTS model) and may register it;
`clone` also builds the clone prompt with a Base model (cached beside the reference), registers
it and speaks a text with it. The reference work itself is `audiobox.refprep`; the voice record is
`audiobox.voices`; speaking is `audiobox.speak`. Beside it: `audiobox.design` for designed voices.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from audiobox.errors import UserError
from audiobox.paths import Dirs
from audiobox.progress import ProgressFn, Reporter
from audiobox.refprep import PreparedRef, RefOptions
from audiobox.speak import SpeakRequest, SpeakResult
from audiobox.voices import Voice, VoiceRegistry


@dataclass
class CloneRequest:
    """Where the reference comes from, where the voice goes, and (optionally) what to say with it."""

    ref_audio: Path | None = None  # a recording (anything ffmpeg reads), or
    ref_source: dict | None = None  # how ref_audio's origin is recorded (default: its path)
    voice: str | None = None  # a registered voice: its reference is reused, or re-cut when `recut`
    ref: RefOptions = field(default_factory=RefOptions)
    recut: bool = False  # new bounds, transcript or choice: re-cut the registered voice's reference
    voice_name: str | None = None  # register under this name (default with `voice`: that voice)
    display_name: str | None = None
    replace: bool = False  # replace an existing voice called voice_name
    tone: str | None = None  # label of the prompt (one voice, several references)
    model: str | None = None  # Base model id or dir
    speech: SpeakRequest | None = None  # text, language, settings, variants, format of the test takes

    @property
    def target(self) -> str | None:
        """The voice the result is registered into, if any."""
        return self.voice_name or self.voice


@dataclass
class Registration:
    voice: str
    prompt_id: str | None
    prompt_reused: bool
    created: bool
    removed_prompts: list[str]
    tone: str | None = None

    def to_dict(self) -> dict:
        return {
            "voice": self.voice,
            "prompt_id": self.prompt_id,
            "prompt_reused": self.prompt_reused,
            "created": self.created,
            "removed_prompts": self.removed_prompts,
            "tone": self.tone,
        }


@dataclass
class PrepareResult:
    reference: PreparedRef
    voice: str | None  # the voice registered or updated, if any
    updated: bool  # an existing voice got this reference (its old prompts are gone)
    removed_prompts: list[str]

    def to_dict(self) -> dict:
        registered = (
            {"voice": self.voice, "updated": self.updated, "removed_prompts": self.removed_prompts}
            if self.voice
            else None
        )
        return {"command": "prepare-ref", **self.reference.to_dict(), "registered": registered}


@dataclass
class CloneResult:
    reference: PreparedRef
    model: str
    prompt_mode: str  # icl | xvec
    prompt_cached: bool
    registered: Registration | None
    spoken: SpeakResult | None

    def to_dict(self) -> dict:
        return {
            "command": "synth",
            "reference": self.reference.to_dict(),
            "prompt": {"model": self.model, "mode": self.prompt_mode, "cached": self.prompt_cached},
            "registered": self.registered.to_dict() if self.registered else None,
            "takes": self.spoken.to_dict() if self.spoken is not None else None,
        }


def check_voice_name(registry: VoiceRegistry, request: CloneRequest) -> None:
    """voice_name must be free unless `replace`, or be the `voice` whose reference is re-cut."""
    if request.voice_name:
        replace = request.replace or request.voice_name == request.voice
        registry.ensure_available(request.voice_name, replace)


def check_request(request: CloneRequest, dirs: Dirs, with_model: bool = True) -> None:
    """Everything `prepare`/`clone` can refuse before any decoding or model load: the voice name,
    the reference options, the tone; with `with_model` (clone) also the Base model's type from its
    config.json and the speech request (`speak.check_speech`: text, language, variants, settings)."""
    from audiobox.speak import check_speech
    from audiobox.tts.models import DEFAULT_MODELS, read_model_info, require_type
    from audiobox.voices import validate_tone

    check_voice_name(VoiceRegistry(dirs.voices), request)
    request.ref.check()
    validate_tone(request.tone)
    if not with_model:
        return
    if request.speech is None and not request.target:
        raise UserError(
            "nothing to do: give --text/--text-file to speak, and/or --voice-name to register the voice"
        )
    info = read_model_info(request.model or DEFAULT_MODELS["base"])
    require_type(info, "base", "cloning a voice")
    if request.speech is not None:
        check_speech(request.speech, info)


def prepare(request: CloneRequest, dirs: Dirs, progress: ProgressFn | None = None) -> PrepareResult:
    """Choose, check and transcribe the reference; register it when asked (no TTS model needed)."""
    registry = VoiceRegistry(dirs.voices)
    check_request(request, dirs, with_model=False)
    prepared, source, voice = resolve_reference(request, dirs, progress)
    slug = request.voice_name or (
        voice.slug if voice is not None and prepared.chosen_by != "registered" else None
    )
    if slug is None:
        return PrepareResult(prepared, None, False, [])
    if voice is not None and slug == voice.slug:
        removed = registry.replace_reference(slug, prepared.audio, prepared.ref_info(), source)
        return PrepareResult(prepared, slug, True, removed)
    register_reference(registry, slug, prepared, source, request.display_name, request.replace)
    return PrepareResult(prepared, slug, False, [])


def clone(request: CloneRequest, dirs: Dirs, pool, progress: ProgressFn | None = None) -> CloneResult:
    """Reference -> prompt (cached) -> registered voice -> takes of `request.speech`, each when asked."""
    from audiobox.speak import speak_with
    from audiobox.tts.settings import resolve_settings
    from audiobox.tts.synth import VoiceSpec
    from audiobox.tts.text import clean_text

    started = time.perf_counter()
    check_request(request, dirs)
    speech = request.speech
    text = clean_text(speech.text) if speech is not None else ""
    registry = VoiceRegistry(dirs.voices)
    settings, settings_source = (None, None)
    if speech is not None:
        settings, settings_source = resolve_settings(speech.profile, None, speech.greedy, **speech.knobs)

    prepared, source, voice = resolve_reference(request, dirs, progress)
    prep_sec = time.perf_counter() - started
    synth = pool.synthesizer(request.model, "base")
    prompt_started = time.perf_counter()
    prompt, prompt_cached = None, False
    if voice is not None and prepared.chosen_by == "registered" and not request.ref.force:
        prompt = registered_prompt(registry, voice.slug, synth.info, request.tone, prepared.x_vector_only)
        prompt_cached = prompt is not None
    if prompt is None:
        prompt, prompt_cached = build_prompt(synth, prepared, request.ref.force, progress)
    prompt_sec = time.perf_counter() - prompt_started

    registered = None
    if request.target:
        registered = register_voice(registry, request, voice, prepared, source, prompt, synth.info)

    spoken = None
    if speech is not None:
        spoken = speak_with(
            synth,
            VoiceSpec.clone(prompt),
            speech,
            dirs,
            text=text,
            voice_meta={
                "id": request.target or f"clone-{(prepared.source_sha256 or 'ref')[:8]}",
                "engine": "clone_prompt",
                "prompt_id": registered.prompt_id if registered else None,
                "tone": request.tone,
                "mode": prompt.mode,
            },
            settings=settings,
            settings_source=settings_source,
            timings={"prep_sec": prep_sec, "prompt_sec": prompt_sec},
            started=started,
            extra={"reference": {k: v for k, v in prepared.ref_info().items() if k != "wav"}},
            progress=progress,
        )
    return CloneResult(prepared, synth.info.ref, prompt.mode, prompt_cached, registered, spoken)


# -- the steps ---------------------------------------------------------------------------------------


def resolve_reference(
    request: CloneRequest, dirs: Dirs, progress: ProgressFn | None = None
) -> tuple[PreparedRef, dict, Voice | None]:
    """(reference, where it came from, the registered voice or None).

    A registered voice without `recut` reuses its reference as is; one that has no transcript yet
    (registered by voice-split) is prepared from its stored recording.
    """
    options = request.ref
    voice = None
    if request.voice:
        voice = VoiceRegistry(dirs.voices).get(request.voice)
        if voice.engine == "custom_voice" or not voice.ref_wav or not voice.ref_wav.is_file():
            raise UserError(
                f"voice {voice.slug!r} has no reference recording (engine {voice.engine}); "
                f"clone from a file with --ref-audio"
            )
        transcribed = options.x_vector_only or bool((voice.ref or {}).get("transcript"))
        if transcribed and not request.recut:
            return registered_reference(voice, options), {"type": "voice", "voice": voice.slug}, voice
        path = voice.source_wav
        source = {"type": "voice", "voice": voice.slug, "file": path.name}
    elif request.ref_audio is not None:
        path = Path(request.ref_audio).expanduser()
        source = request.ref_source or {"type": "file", "path": str(path.resolve())}
    else:
        raise UserError("give the reference: a recording (--ref-audio) or a registered voice (--voice)")
    return prepare_file(path, options, dirs, progress), source, voice


def prepare_file(
    path: Path, options: RefOptions, dirs: Dirs, progress: ProgressFn | None = None
) -> PreparedRef:
    """`refprep.prepare_reference` of a recording, cached under <cache>/refs; the Whisper model (from
    <cache>/asr) is loaded only when a transcript is needed."""
    from audiobox.asr import load_asr
    from audiobox.refprep import prepare_reference

    def loader():
        return load_asr(
            options.asr_model, device=options.asr_device, cache_dir=dirs.stage("asr"), progress=progress
        )

    return prepare_reference(path, dirs.stage("refs"), options, asr_loader=loader, progress=progress)


def registered_reference(voice: Voice, options: RefOptions) -> PreparedRef:
    """A PreparedRef for a voice's stored reference, used as is (same segment, same transcript)."""
    from audiobox.audio import load_audio

    ref = voice.ref or {}
    audio = load_audio(voice.ref_wav)
    transcript = ref.get("transcript")
    if not options.x_vector_only and not transcript:
        raise UserError(
            f"voice {voice.slug!r} has no transcript of its reference; pass --ref-text or --x-vector-only"
        )
    scores = ref.get("scores") or {}
    segment = ref.get("segment") or {"start": 0.0, "end": audio.duration}
    return PreparedRef(
        source=str(voice.ref_wav),
        source_sha256=ref.get("source_sha256", ""),
        source_duration=audio.duration,
        start=float(segment["start"]),
        end=float(segment["end"]),
        audio=audio,
        segment_path=voice.ref_wav,
        transcript=None if options.x_vector_only else transcript,
        transcript_source="none" if options.x_vector_only else ref.get("transcript_source", "registered"),
        language=ref.get("language") or "auto",
        detected_language=ref.get("detected_language"),
        language_prob=None,
        confidence=scores.get("confidence"),
        avg_logprob=scores.get("avg_logprob"),
        score=scores.get("score"),
        parts=scores.get("parts") or {},
        quality=scores.get("quality") or {},
        candidates=[],
        chosen_index=0,
        chosen_by="registered",
        gain_db=0.0,
        asr_model=ref.get("asr_model"),
        x_vector_only=options.x_vector_only,
        cache_dir=voice.dir,
        reused={"reference": True},
        warnings=[],
        forced=list(ref.get("forced") or []),
    )


def build_prompt(synth, prepared: PreparedRef, force: bool, progress: ProgressFn | None = None):
    """(prompt, reused): the clone prompt for this reference + model, cached beside the reference."""
    from audiobox.fsutil import sha256_json
    from audiobox.stagecache import cached_file
    from audiobox.tts.prompts import ClonePrompt

    key = sha256_json(
        {
            "audio": prepared.source_sha256,
            "start": prepared.start,
            "end": prepared.end,
            "text": prepared.transcript,
            "xvec": prepared.x_vector_only,
            "model": synth.info.ref,
            "fingerprint": synth.info.fingerprint,
            "n": len(prepared.audio.samples),
        }
    )[:20]

    def build(_path=None):
        with Reporter(progress).step("prompt", "x-vector" if prepared.x_vector_only else "ICL"):
            return synth.build_clone_prompt(
                prepared.audio, prepared.transcript, x_vector_only=prepared.x_vector_only
            )

    if prepared.chosen_by == "registered":  # a voice's own reference: its registry prompts are the cache
        return build(), False
    stem = Path(prepared.cache_dir) / "prompts" / key

    def load(_path: Path):
        try:
            prompt = ClonePrompt.load(stem)
            prompt.check_compatible(synth.info)
        except UserError:
            return None
        return prompt

    def build_and_save(path: Path):
        prompt = build()
        prompt.save(stem)
        return prompt

    return cached_file(ClonePrompt.files(stem)[0], refresh=force, load=load, make=build_and_save)


def registered_prompt(registry: VoiceRegistry, slug: str, model_info, tone: str | None, x_vector_only: bool):
    """The voice's newest prompt for this model and tone in the wanted mode, or None."""
    voice = registry.get(slug)
    pid = voice.prompt_id_for(model_info.tag, tone)
    if pid is None or voice.prompts[pid].get("mode") != ("xvec" if x_vector_only else "icl"):
        return None
    prompt, _ = registry.load_prompt(slug, model_info, tone)
    return prompt


def register_voice(
    registry: VoiceRegistry,
    request: CloneRequest,
    voice: Voice | None,
    prepared: PreparedRef,
    source: dict,
    prompt,
    model_info,
) -> Registration:
    """Store the reference and the prompt into request.target; a new voice gets both in one transaction."""
    slug = request.target
    extra = {
        "ref_segment": [round(prepared.start, 3), round(prepared.end, 3)],
        "transcript": prepared.transcript,
    }
    if voice is None or slug != voice.slug:
        created = register_reference(
            registry,
            slug,
            prepared,
            source,
            request.display_name,
            request.replace,
            prompts=((prompt, request.tone, extra),),
        )
        return Registration(slug, next(iter(created.prompts)), False, True, [], request.tone)
    removed: list[str] = []
    if prepared.chosen_by != "registered":  # a new reference: the prompts of the old one go
        removed = registry.replace_reference(slug, prepared.audio, prepared.ref_info(), source)
    current = registry.get(slug)
    pid = current.prompt_id_for(model_info.tag, request.tone)
    reuse = pid is not None and not request.ref.force and current.prompts[pid].get("mode") == prompt.mode
    if not reuse:
        pid = registry.add_prompt(slug, prompt, tone=request.tone, extra=extra)
    return Registration(slug, pid, reuse, False, removed, request.tone)


def register_reference(
    registry: VoiceRegistry,
    slug: str,
    prepared: PreparedRef,
    source: dict,
    display_name: str | None = None,
    replace: bool = False,
    prompts: tuple = (),
) -> Voice:
    """Create a clone voice with this reference (ref.wav, voice.json.ref, prompts) in one transaction."""
    from audiobox.voices import clone_record

    record = clone_record(
        display_name=display_name,
        ref=prepared.ref_info(),
        source={
            **source,
            "sha256": prepared.source_sha256,
            "duration_sec": round(prepared.source_duration, 3),
        },
    )
    return registry.create(
        slug, record, write_files=prepared.registry_files(), replace=replace, prompts=prompts
    )
