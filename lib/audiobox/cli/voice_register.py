"""voice-register: from a link or a recording to a voice that is ready to speak, in one process.

Stages (each timed): split (download, VAD, Demucs, clips) -> reference (best segment + transcript,
as voice-clone does it) -> clone prompt (Qwen3-TTS Base, loaded once) -> registration (ref.wav,
voice.json, prompt) -> unless --skip-synth, a test sentence with the new voice.
Everything that can be checked without models (voice name, language, model, ASR model, trim
syntax) is checked before any download or model load.
"""
# the workflow is audiobox.register; this module parses the flags into a RegisterRequest and prints

from __future__ import annotations

import argparse
import shlex

from audiobox.cli.common import (
    HelpFormatter,
    Parser,
    ProgressView,
    add_asr,
    add_dirs,
    add_generation,
    add_runtime,
    add_voice_name,
    print_json,
    print_takes,
    runtime_options,
    sampling_fields,
    stderr_console,
)
from audiobox.cli.split_args import add_source_args, add_split_args, clip_chooser, split_options
from audiobox.cli.timeflags import time_value
from audiobox.errors import run_main
from audiobox.paths import app_command
from audiobox.register import DEFAULT_TEST_TEXT
from audiobox.tts.models import DEFAULT_MODELS

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


def register_request(args):
    """The library request from the parsed flags (voice-register only parses, calls audiobox.register, prints)."""
    from audiobox.languages import normalize_language
    from audiobox.refprep import RefOptions
    from audiobox.register import RegisterRequest
    from audiobox.speak import SpeakRequest

    speech = None
    if not args.skip_synth:
        speech = SpeakRequest(
            text=args.text if args.text is not None else DEFAULT_TEST_TEXT,
            language=args.language,
            **sampling_fields(args),
        )
    return RegisterRequest(
        voice_name=args.voice_name,
        split=split_options(args, None),
        ref=RefOptions(
            ref_start=args.ref_start,
            ref_end=args.ref_end,
            ref_text=args.ref_text,
            language=normalize_language(args.ref_language),
            x_vector_only=args.x_vector_only,
            asr_device=args.asr_device,
            force_bad_ref=args.force_bad_ref,
            **({"asr_model": args.asr_model} if args.asr_model else {}),
        ),
        speech=speech,
        display_name=args.display_name,
        replace=args.force,
        model=args.model,
    )


def dispatch(argv) -> int:
    args = build_parser().parse_args(argv)
    from audiobox.paths import resolve_dirs

    console = stderr_console()
    dirs = resolve_dirs(cache=args.cache, out=args.out)
    if args.list_speakers:
        from audiobox.cli.common import show_speakers

        return show_speakers(split_options(args, None), dirs, args.json)
    from audiobox.register import register
    from audiobox.tts.pool import ModelPool

    request = register_request(args)
    with ProgressView(console) as progress:
        if args.interactive:
            request.choose_reference = clip_chooser(progress, console)
        result = register(request, dirs, ModelPool(runtime_options(args), args.backend, progress), progress)
    cache_flag = f" --cache {shlex.quote(str(dirs.cache))}" if args.cache else ""
    next_cmd = (
        f"{app_command('voice-synth')} speak --voice {result.voice} --text {shlex.quote('Your text here.')}"
        f"{cache_flag}"
    )
    if args.json:
        print_json(result.to_dict() | {"next": next_cmd})
        return 0
    console.print("stage times: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.stage_seconds.items()))
    if result.spoken:
        print_takes(console, result.spoken)
    console.print(f"voice {result.voice!r} is ready. Next:\n  {next_cmd}")
    return 0


def main(argv=None) -> int:
    return run_main(dispatch, argv)


if __name__ == "__main__":
    raise SystemExit(main())
