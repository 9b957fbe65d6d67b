"""voice-split: pull clean voice clips out of a link or a recording (and optionally register a voice).

Stages: download (yt-dlp, cached) -> speech map (Silero VAD) -> speakers (who talks when; one is
chosen) -> vocals of that speaker's speech-dense windows (Demucs, in-process) -> ranked clips that
start and end inside that speaker's speech -> 24 kHz mono wav files.
"""

from __future__ import annotations

import argparse
import shlex

from audiobox.cli.common import (
    HelpFormatter,
    Parser,
    ProgressView,
    add_dirs,
    add_voice_name,
    print_json,
    show_speakers,
    stderr_console,
)
from audiobox.cli.split_args import add_source_args, add_split_args, clip_chooser, split_options
from audiobox.errors import run_main
from audiobox.paths import app_command

EPILOG = """examples:
  voice-split --url "https://www.youtube.com/watch?v=ID" --start 1:30 --end 6:00 --clips 5
  voice-split --audio interview.mp3 --voice-name host --length 12
  voice-split --audio podcast.wav --demucs-repo ~/models/demucs --interactive --voice-name guest
  voice-split --audio interview.mp3 --list-speakers          # who talks, how long; a sample of each
  voice-split --audio interview.mp3 --speaker 2 --voice-name guest
  voice-split --audio interview.mp3 --match guest_sample.wav --voice-name guest
"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="voice-split", description=__doc__, epilog=EPILOG, formatter_class=HelpFormatter)
    add_source_args(parser)
    add_split_args(parser)
    reg = parser.add_argument_group("registration")
    add_voice_name(reg, "register the best reference clip as this voice")
    reg.add_argument(
        "--interactive",
        "-i",
        action="store_true",
        help="choose which clip becomes the reference (needs --voice-name)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    add_dirs(parser, out_help="output root; clips go to OUT/<voice name or source id>/")
    return parser


def result_json(result, voice=None) -> dict:
    from audiobox.split import manifest

    data = manifest(result)
    data["out_dir"] = str(result.out_dir) if result.out_dir else None
    data["voice"] = voice.slug if voice else None
    return data


def dispatch(argv) -> int:
    args = build_parser().parse_args(argv)
    from audiobox.paths import resolve_dirs
    from audiobox.register import SplitRequest, split_voice

    dirs = resolve_dirs(cache=args.cache, out=args.out)
    opts = split_options(args, None)
    if args.list_speakers:
        return show_speakers(opts, dirs, args.json)
    console = stderr_console()
    request = SplitRequest(opts, args.voice_name, args.display_name, args.force)
    with ProgressView(console) as progress:
        if args.interactive:
            request.choose_reference = clip_chooser(progress, console)
        done = split_voice(request, dirs, progress)
    result, voice = done.split, done.voice
    if args.json:
        print_json(result_json(result, voice))
        return 0
    console.print(
        f"{len(result.clips)} clips"
        + (f" (of the {args.clips} asked)" if len(result.clips) < args.clips else "")
        + f" in {result.out_dir}"
        + (f" (+ reference.wav, {result.reference.duration:.1f} s)" if result.reference else "")
        + (f"; {result.speaker_note()['text']}" if result.speakers else "")
    )
    console.print(
        f"Demucs ran on {result.stats['separated_s']:.0f} s of {result.stats['audio_s']:.0f} s; "
        f"total {result.timings['total_s']:.1f} s"
    )
    if voice is not None:
        cache_flag = f" --cache {shlex.quote(args.cache)}" if args.cache else ""
        console.print(
            f"registered voice {voice.slug!r} (reference only, no transcript or prompt yet). Next:\n"
            f'  {app_command("voice-clone")} synth --voice {voice.slug} --text "..."'
            f"{cache_flag}\n  (transcribes the reference and builds the clone prompt; "
            f"voice-register does split + clone in one step)"
        )
    return 0


def main(argv=None) -> int:
    return run_main(dispatch, argv)


if __name__ == "__main__":
    raise SystemExit(main())
