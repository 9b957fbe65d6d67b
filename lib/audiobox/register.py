"""Voices from a link or a recording, through the split (audiobox.split): voice-split and voice-register.

`split_voice` (voice-split): clips of the source, and its reference clip registered as a voice when
asked (no transcript or prompt yet). `register` (voice-register), as a chain of the library's own
steps, each a progress stage of its own and timed: split (download, VAD, speakers, Demucs, clips) ->
reference (best segment + transcript, as voice-clone prepares one: `audiobox.clone.prepare_file`) ->
clone prompt (Qwen3-TTS Base, loaded once) -> register (ref.wav, voice.json and the prompt in one
registry transaction) -> unless no speech was asked, a test sentence (`audiobox.speak.run_speak`).
`check_request`/`check_split_request` refuse every input they can before any download or model load.
Beside it: `audiobox.clone` (a reference you already have), `audiobox.design` (a described voice).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from audiobox.errors import UserError
from audiobox.paths import Dirs
from audiobox.progress import ProgressFn, Reporter

if TYPE_CHECKING:  # the heavy halves are imported where they run, so the app's --help stays light
    from pathlib import Path

    from audiobox.refprep import PreparedRef, RefOptions
    from audiobox.sources import SourceMedia
    from audiobox.speak import SpeakRequest, SpeakResult
    from audiobox.split import SplitOptions, SplitResult
    from audiobox.tts.models import ModelInfo
    from audiobox.voices import Voice

log = logging.getLogger(__name__)

DEFAULT_TEST_TEXT = "Hello! This is my new voice. I hope it sounds just like the recording."
STAGES = ("split", "reference", "prompt", "register", "speak")


@dataclass
class SplitRequest:
    """voice-split: the clips of a source, and (with voice_name) its reference clip as a voice."""

    split: SplitOptions  # out_dir None: <work>/<voice_name, else the source's id>
    voice_name: str | None = None  # register the reference clip (a transcript and prompt come later)
    display_name: str | None = None
    replace: bool = False
    choose_reference: Callable[[SplitResult], None] | None = None  # as RegisterRequest's (needs voice_name)


@dataclass
class SplitVoiceResult:
    split: SplitResult
    voice: Voice | None  # the voice registered, if voice_name was given


def check_split_request(request: SplitRequest, dirs: Dirs) -> None:
    """What voice-split can refuse before any download or model load."""
    from audiobox.voices import VoiceRegistry

    if request.choose_reference is not None and not request.voice_name:
        raise UserError("--interactive chooses the reference of the voice to register: add --voice-name")
    if request.voice_name:
        VoiceRegistry(dirs.voices).ensure_available(request.voice_name, request.replace)
    request.split.validate()


def split_voice(request: SplitRequest, dirs: Dirs, progress: ProgressFn | None = None) -> SplitVoiceResult:
    """Split the source into clips (+ reference.wav, clips.json); register the reference clip when asked."""
    from audiobox.split import register_reference_clip
    from audiobox.voices import VoiceRegistry

    check_split_request(request, dirs)
    result = _run_split(
        request.split,
        dirs,
        progress,
        lambda source: dirs.work / (request.voice_name or source.source_id),
        request.choose_reference,
    )
    voice = None
    if request.voice_name:
        registry = VoiceRegistry(dirs.voices)
        voice = register_reference_clip(
            registry, request.voice_name, result, display_name=request.display_name, replace=request.replace
        )
    return SplitVoiceResult(result, voice)


def _default_ref_options() -> RefOptions:
    from audiobox.refprep import RefOptions

    return RefOptions()


@dataclass
class RegisterRequest:
    """Where the voice comes from, what it is called, and what it says once registered."""

    voice_name: str
    split: SplitOptions  # the source and its clips; out_dir None: <work>/<voice_name>
    # how the reference is cut from the split: the best clip, or ref_start/ref_end of the source itself
    ref: RefOptions = field(default_factory=_default_ref_options)
    speech: SpeakRequest | None = None  # the test sentence (text, language, settings); None: speak nothing
    display_name: str | None = None
    replace: bool = False  # replace an existing voice called voice_name
    model: str | None = None  # Base model id or dir (default: DEFAULT_MODELS["base"])
    # called with the split's result before the reference is prepared (voice-register --interactive:
    # the user picks a clip, `split.use_clip_as_reference`); the library itself never asks anyone
    choose_reference: Callable[[SplitResult], None] | None = None

    @property
    def spanned(self) -> bool:
        """The reference is a span of the source (ref_start/ref_end), not a clip of the split."""
        return self.ref.ref_start is not None or self.ref.ref_end is not None


@dataclass
class RegisterResult:
    voice: str
    ready: bool
    prompt_id: str
    model: str
    split: SplitResult
    reference: PreparedRef
    spoken: SpeakResult | None
    stage_seconds: dict[str, float]

    def to_dict(self) -> dict:
        """What voice-register --json prints (the app adds the next command to run)."""
        split, spoken = self.split, self.spoken
        return {
            "voice": self.voice,
            "ready": self.ready,
            "prompt_id": self.prompt_id,
            "model": self.model,
            "clips_dir": str(split.out_dir),
            "clips": [str(c.path) for c in split.clips],
            "reference": {k: v for k, v in self.reference.to_dict().items() if k != "audio"},
            "takes": [str(p) for p in spoken.files] if spoken else [],
            "seed": spoken.meta["seed"] if spoken else None,
            "meta": str(spoken.meta_path) if spoken else None,
            "stage_seconds": self.stage_seconds,
            "split": {
                "stats": split.stats,
                "warnings": split.warnings,
                "speakers": split.speakers.to_json() if split.speakers else None,
            },
        }


def check_request(request: RegisterRequest, dirs: Dirs, progress: ProgressFn | None = None) -> ModelInfo:
    """Everything that needs no download and no model weights, as voice-clone and speak check it
    (RefOptions.check, speak.check_speech): the voice name, the reference options, the Base model's
    type from its config.json, the test sentence, the split options. Last, the Whisper model is located
    (fetched, with progress, when it is not cached and the hub answers). Returns the Base model's info."""
    from audiobox.speak import check_speech
    from audiobox.tts.models import DEFAULT_MODELS, read_model_info, require_type
    from audiobox.voices import VoiceRegistry

    VoiceRegistry(dirs.voices).ensure_available(request.voice_name, request.replace)
    if request.choose_reference is not None and request.spanned:
        raise UserError(
            "--interactive picks a clip of the split; --ref-start/--ref-end name the span: use one"
        )
    request.ref.check()
    info = read_model_info(request.model or DEFAULT_MODELS["base"])
    require_type(info, "base", "voice-register (cloning a voice)")
    if request.speech is not None:
        if not request.speech.text.strip():
            raise UserError("--text is empty (or pass --skip-synth)")
        check_speech(_test_speech(request, info), info)
    request.split.validate()
    if request.split.url and request.split.start and request.spanned:
        request.ref.shifted(request.split.start)  # the span must lie in the part of the link downloaded
    if request.ref.uses_asr:
        from audiobox.asr import locate_model

        locate_model(request.ref.asr_model, dirs.stage("asr"), progress)
    return info


def register(
    request: RegisterRequest, dirs: Dirs, pool, progress: ProgressFn | None = None
) -> RegisterResult:
    """Split -> reference -> clone prompt -> registered voice -> test sentence (when asked).

    `pool` (tts.pool.ModelPool) loads the Base model once, for the prompt and the test sentence;
    `progress` sees each stage and the library's own stages inside them. Nothing is registered
    unless the prompt was built: a failed run leaves the clips and caches, never half a voice."""
    from audiobox.voices import VoiceRegistry, clone_record

    info = check_request(request, dirs, progress)
    slug = request.voice_name
    clock = _StageClock(progress)
    split = _split(request, dirs, clock, progress)
    prepared = _reference(request, split, dirs, clock, progress)

    clock.start("prompt", f"clone prompt with {info.ref}")
    synth = pool.synthesizer(info.ref, "base")
    prompt = synth.build_clone_prompt(
        prepared.audio, prepared.transcript, x_vector_only=request.ref.x_vector_only
    )
    clock.end("prompt")

    clock.start("register", f"voice {slug!r}")
    registry = VoiceRegistry(dirs.voices)
    record = clone_record(
        display_name=request.display_name,
        ref=prepared.ref_info(),
        source=split.source_record(
            clip=[round(split.reference.start, 3), round(split.reference.end, 3)],
            clips_dir=str(split.out_dir),
        ),
    )
    voice = registry.create(
        slug,
        record,
        replace=request.replace,
        write_files=prepared.registry_files(),  # source.wav: what the reference was cut from, as voice-clone
        prompts=((prompt, None, None),),
    )
    (prompt_id,) = voice.prompts
    clock.end("register", f"prompt {prompt_id}")

    spoken = None
    if request.speech is not None:
        from audiobox.speak import run_speak

        speech = _test_speech(request, info)
        clock.start("speak", f"test sentence: {speech.text!r}")
        spoken = run_speak(speech, dirs, pool, progress=progress)
        clock.end("speak", ", ".join(str(p) for p in spoken.files))
    return RegisterResult(
        voice=slug,
        ready=registry.get(slug).ready,
        prompt_id=prompt_id,
        model=info.ref,
        split=split,
        reference=prepared,
        spoken=spoken,
        stage_seconds=clock.seconds,
    )


# -- the stages ----------------------------------------------------------------------------------------------


class _StageClock:
    """voice-register's own stages as progress stages, each timed for RegisterResult.stage_seconds."""

    def __init__(self, progress: ProgressFn | None):
        self.reporter = Reporter(progress)
        self.seconds: dict[str, float] = {}
        self._started: dict[str, float] = {}

    def start(self, stage: str, what: str) -> None:
        self._started[stage] = time.monotonic()
        self.reporter.start(stage, message=what)

    def end(self, stage: str, outcome: str = "") -> None:
        self.seconds[stage] = round(time.monotonic() - self._started.pop(stage), 3)
        self.reporter.end(stage, outcome)


def _test_speech(request: RegisterRequest, info: ModelInfo) -> SpeakRequest:
    """The test sentence as run_speak takes it: spoken by the new voice with the model that cloned it."""
    return replace(request.speech, voice=request.voice_name, model=info.ref, app="voice-register")


def _run_split(
    options: SplitOptions,
    dirs: Dirs,
    progress: ProgressFn | None,
    out_dir: Callable[[SourceMedia], Path],
    choose_reference: Callable[[SplitResult], None] | None,
    on_start: Callable[[], None] | None = None,
) -> SplitResult:
    """The split of voice-split and voice-register: Demucs and a --match sample are checked first and a
    local file is opened before `on_start`, so a bad one fails before any download or stage line; then
    the clips go to options.out_dir or `out_dir(source)`, and `choose_reference` may pick another clip."""
    from audiobox.split import VoiceSplitter

    splitter = VoiceSplitter(dirs.stage("split"), dirs.stage("downloads"), progress)
    splitter.prepare(options)
    local = splitter.resolve(options) if options.audio else None
    if on_start is not None:
        on_start()
    source, trim = local or splitter.resolve(options)
    result = splitter.run(replace(options, out_dir=options.out_dir or out_dir(source)), source, trim)
    if choose_reference is not None:
        choose_reference(result)
    return result


def _split(
    request: RegisterRequest, dirs: Dirs, clock: _StageClock, progress: ProgressFn | None
) -> SplitResult:
    """Clips of the source into <work>/<voice name>/ and its best clip (or the one the user picks)."""
    result = _run_split(
        request.split,
        dirs,
        progress,
        lambda _source: dirs.work / request.voice_name,
        request.choose_reference,
        on_start=lambda: clock.start("split", "clips from the source"),
    )
    if result.reference is None or result.reference.path is None:
        raise UserError("no reference clip came out of the split")
    clock.end(
        "split",
        f"{len(result.clips)} clips + reference ({result.reference.duration:.1f} s) in {result.out_dir}"
        + (f"; {result.speaker_note()['text']}" if result.speakers else ""),
    )
    return result


def _reference(
    request: RegisterRequest, split: SplitResult, dirs: Dirs, clock: _StageClock, progress: ProgressFn | None
) -> PreparedRef:
    """The reference exactly as voice-clone prepares one: of the split's best clip, or of the
    ref_start/ref_end span of the source (in seconds of the source, so shifted when only a range of
    a link was downloaded)."""
    from audiobox.clone import prepare_file

    clock.start("reference", "segment + transcript")
    options = request.ref.shifted(split.source.offset) if request.spanned else request.ref
    path = split.source.path if request.spanned else split.reference.path
    prepared = prepare_file(path, options, dirs, progress)
    for warning in prepared.warnings:
        log.warning(warning)
    clock.end(
        "reference",
        f"{prepared.duration:.1f} s, transcript: {prepared.transcript!r}"
        if prepared.transcript
        else f"{prepared.duration:.1f} s, x-vector only",
    )
    return prepared
