"""voice-register: from a link or a recording to a voice that is ready to speak, in one process.

Stages (each timed): split (download, VAD, Demucs, clips) -> reference (best segment + transcript,
as voice-clone does it) -> clone prompt (Qwen3-TTS Base, loaded once) -> registration (ref.wav,
voice.json, prompt) -> unless --skip-synth, a test sentence with the new voice.
Everything that can be checked without models (voice name, language, model, ASR model, trim
syntax) is checked before any download or model load.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time

from audiobox.cli.common import (
    HelpFormatter,
    Parser,
    ProgressView,
    add_asr,
    add_dirs,
    add_generation,
    add_runtime,
    add_voice_name,
    print_takes,
    runtime_options,
    sampling_fields,
    stderr_console,
    time_value,
)
from audiobox.cli.split_args import add_source_args, add_split_args, choose_reference, split_options
from audiobox.errors import UserError, run_main
from audiobox.paths import app_command
from audiobox.progress import ProgressEvent
from audiobox.tts.models import DEFAULT_MODELS

DEFAULT_TEST_TEXT = "Hello! This is my new voice. I hope it sounds just like the recording."

EPILOG = """examples:
  voice-register --url "https://www.youtube.com/watch?v=ID" --start 2:00 --end 7:00 --voice-name host
  voice-register --audio interview.wav --voice-name guest --text "Nice to meet you." --language english
  voice-register --audio talk.mp3 --voice-name lecturer --skip-synth   # prompt built, no test sentence
  voice-register --audio podcast.mp3 --voice-name guest --speaker 2     # the second voice by speech time
"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="voice-register", description=__doc__, epilog=EPILOG, formatter_class=HelpFormatter)
    add_source_args(parser)
    add_split_args(parser, clips_default=3)
    voice = parser.add_argument_group("voice")
    add_voice_name(voice, "name of the new voice", required=True)
    voice.add_argument("--interactive", "-i", action="store_true", help="pick the reference clip yourself")
    ref = parser.add_argument_group("reference (as voice-clone)")
    ref.add_argument(
        "--ref-start",
        type=time_value,
        metavar="TS",
        help="make the reference exactly this span of the source (its own timeline: seconds or m:ss), "
        "cut and checked as voice-clone does; default: the best clip of the split",
    )
    ref.add_argument("--ref-end", type=time_value, metavar="TS", help="end of that span")
    ref.add_argument("--ref-text", help="exact words of the reference (skips whisper)")
    ref.add_argument(
        "--ref-language", default="auto", help="language of the reference (auto, a name or ISO code)"
    )
    ref.add_argument("--x-vector-only", action="store_true", help="speaker embedding only, no transcript")
    add_asr(ref)
    ref.add_argument("--force-bad-ref", action="store_true", help="keep a reference that fails the checks")
    tts = parser.add_argument_group("speech")
    tts.add_argument("--text", help=f"test sentence (default: {DEFAULT_TEST_TEXT!r})")
    tts.add_argument("--language", default="auto", help="language of the test sentence")
    tts.add_argument("--skip-synth", action="store_true", help="build and register the prompt, speak nothing")
    add_generation(parser)
    add_runtime(parser, f"Qwen3-TTS Base model (default: {DEFAULT_MODELS['base']})")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    add_dirs(parser)
    return parser


class _Stages:
    """Times each stage and shows it as a progress stage (a bar on a terminal, start/end lines otherwise)."""

    def __init__(self, progress):
        self.progress = progress
        self.times: dict[str, float] = {}
        self._name: str | None = None
        self._t0 = 0.0

    def start(self, name: str, what: str) -> None:
        self._name, self._t0 = name, time.monotonic()
        self.progress(ProgressEvent(name, "start", message=what))

    def end(self, note: str = "") -> None:
        self.times[self._name] = round(time.monotonic() - self._t0, 3)
        self.progress(ProgressEvent(self._name, "end", message=note))


def _precheck(args, dirs, registry):
    """Everything that needs no model and no download, with the checks voice-clone and speak use
    (RefOptions.check, speak.check_speech). Returns (model info, reference options, test speech or None)."""
    from audiobox.languages import normalize_language
    from audiobox.refprep import RefOptions
    from audiobox.speak import SpeakRequest, check_speech
    from audiobox.tts.models import DEFAULT_MODELS, read_model_info, require_type

    registry.ensure_available(args.voice_name, args.force)
    if args.interactive and (args.ref_start is not None or args.ref_end is not None):
        raise UserError(
            "--interactive picks a clip of the split; --ref-start/--ref-end name the span: use one"
        )
    ref_opts = RefOptions(
        ref_start=args.ref_start,
        ref_end=args.ref_end,
        ref_text=args.ref_text,
        language=normalize_language(args.ref_language),
        x_vector_only=args.x_vector_only,
        asr_device=args.asr_device,
        force_bad_ref=args.force_bad_ref,
        **({"asr_model": args.asr_model} if args.asr_model else {}),
    )
    ref_opts.check()
    info = read_model_info(args.model or DEFAULT_MODELS["base"])
    require_type(info, "base", "voice-register (cloning a voice)")
    speech = None
    if not args.skip_synth:
        text = args.text if args.text is not None else DEFAULT_TEST_TEXT
        if not text.strip():
            raise UserError("--text is empty (or pass --skip-synth)")
        speech = SpeakRequest(
            text=text,
            voice=args.voice_name,
            language=args.language,
            **sampling_fields(args),
            model=info.ref,
            app="voice-register",
        )
        check_speech(speech, info)
    if ref_opts.uses_asr:
        from audiobox.asr import locate_model

        with ProgressView() as progress:  # the last check: fetching the model shows its bytes
            locate_model(ref_opts.asr_model, dirs.stage("asr"), progress)
    return info, ref_opts, speech


def dispatch(argv) -> int:
    args = build_parser().parse_args(argv)
    from audiobox.paths import resolve_dirs
    from audiobox.voices import VoiceRegistry

    console = stderr_console()
    dirs = resolve_dirs(cache=args.cache, out=args.out)
    registry = VoiceRegistry(dirs.voices)
    if args.list_speakers:
        from audiobox.cli.common import show_speakers
        from audiobox.split import VoiceSplitter

        with ProgressView(console) as progress:
            splitter = VoiceSplitter(dirs.stage("split"), dirs.stage("downloads"), progress)
            return show_speakers(splitter, split_options(args, None), dirs, args.json, progress)
    info, ref_opts, speech = _precheck(args, dirs, registry)
    opts = split_options(args, None)
    opts.validate()
    if opts.url and opts.start and (args.ref_start is not None or args.ref_end is not None):
        ref_opts.shifted(opts.start)  # a reference span must lie in the part of the link downloaded
    with ProgressView(console) as progress:
        return _register(args, dirs, registry, opts, (info, ref_opts, speech), console, progress)


def _register(args, dirs, registry, opts, checked, console, progress) -> int:
    """The stages, once every input is checked; `progress` shows them and the library's own."""
    info, ref_opts, speech = checked
    slug = args.voice_name
    stages = _Stages(progress)

    # 1. split
    from audiobox.split import VoiceSplitter

    splitter = VoiceSplitter(dirs.stage("split"), dirs.stage("downloads"), progress)
    splitter.prepare(opts)  # a missing Demucs model fails here, before any download
    local = splitter.resolve(opts) if opts.audio else None  # a bad file: its error line alone
    stages.start("split", "clips from the source")
    source, trim = local or splitter.resolve(opts)
    opts.out_dir = dirs.work / slug
    result = splitter.run(opts, source, trim)
    if args.interactive:
        progress.close()
        choose_reference(result, console)
    if result.reference is None or result.reference.path is None:
        raise UserError("no reference clip came out of the split")
    stages.end(
        f"{len(result.clips)} clips + reference ({result.reference.duration:.1f} s) in {result.out_dir}"
        + (f"; {result.speaker_note()['text']}" if result.speakers else "")
    )

    # 2. reference: best segment + transcript, exactly as voice-clone prepares one
    from audiobox.refprep import prepare_reference

    stages.start("reference", "segment + transcript")

    def asr_loader():
        from audiobox.asr import load_asr

        return load_asr(
            ref_opts.asr_model, device=args.asr_device, cache_dir=dirs.stage("asr"), progress=progress
        )

    # --ref-start/--ref-end name a span of the source itself; otherwise the split's best clip is the reference
    spanned = args.ref_start is not None or args.ref_end is not None
    if spanned:  # a link's --start/--end alone may have been downloaded: the file then starts there
        ref_opts = ref_opts.shifted(result.source.offset)
    prepared = prepare_reference(
        result.source.path if spanned else result.reference.path,
        dirs.stage("refs"),
        ref_opts,
        asr_loader=asr_loader,
        progress=progress,
    )
    for warning in prepared.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    stages.end(
        f"{prepared.duration:.1f} s, transcript: {prepared.transcript!r}"
        if prepared.transcript
        else f"{prepared.duration:.1f} s, x-vector only"
    )

    # 3. clone prompt (model loaded once; reused for the test sentence)
    from audiobox.tts.pool import ModelPool

    stages.start("prompt", f"clone prompt with {info.ref}")
    pool = ModelPool(runtime_options(args), backend=args.backend, progress=progress)
    synth = pool.synthesizer(info.ref, "base")
    prompt = synth.build_clone_prompt(prepared.audio, prepared.transcript, x_vector_only=args.x_vector_only)
    stages.end()

    # 4. register: ref.wav, the prompt and voice.json in one locked transaction
    from audiobox.voices import clone_record

    stages.start("register", f"voice {slug!r}")
    record = clone_record(
        display_name=args.display_name,
        ref=prepared.ref_info(),
        source=result.source_record(
            clip=[round(result.reference.start, 3), round(result.reference.end, 3)],
            clips_dir=str(result.out_dir),
        ),
    )
    voice = registry.create(
        slug,
        record,
        replace=args.force,
        write_files=prepared.registry_files(),  # source.wav: what the reference was cut from, as voice-clone
        prompts=((prompt, None, None),),
    )
    (prompt_id,) = voice.prompts
    stages.end(f"prompt {prompt_id}")

    # 5. test sentence
    take_files: list[str] = []
    spoken = None
    if speech is not None:
        from audiobox.speak import run_speak

        stages.start("speak", f"test sentence: {speech.text!r}")
        spoken = run_speak(speech, dirs, pool, progress=progress)
        take_files = [str(p) for p in spoken.files]
        stages.end(", ".join(take_files))

    cache_flag = f" --cache {shlex.quote(str(dirs.cache))}" if args.cache else ""
    next_cmd = f"{app_command('voice-synth')} speak --voice {slug} --text {shlex.quote('Your text here.')}{cache_flag}"
    summary = {
        "voice": slug,
        "ready": registry.get(slug).ready,
        "prompt_id": prompt_id,
        "model": info.ref,
        "clips_dir": str(result.out_dir),
        "clips": [str(c.path) for c in result.clips],
        "reference": prepared.to_dict() | {"audio": None},
        "takes": take_files,
        "seed": spoken.meta["seed"] if spoken else None,
        "meta": str(spoken.meta_path) if spoken else None,
        "stage_seconds": stages.times,
        "split": {
            "stats": result.stats,
            "warnings": result.warnings,
            "speakers": result.speakers.to_json() if result.speakers else None,
        },
        "next": next_cmd,
    }
    summary["reference"].pop("audio", None)
    progress.close()
    if args.json:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    else:
        console.print("stage times: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.times.items()))
        if spoken:
            print_takes(console, spoken)
        console.print(f"voice {slug!r} is ready. Next:\n  {next_cmd}")
    return 0


def main(argv=None) -> int:
    return run_main(dispatch, argv)


if __name__ == "__main__":
    raise SystemExit(main())
