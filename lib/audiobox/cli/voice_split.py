"""voice-split: pull clean voice clips out of a link or a recording (and optionally register a voice).

Stages: download (yt-dlp, cached) -> speech map (Silero VAD) -> speakers (who talks when; one is
chosen) -> vocals of that speaker's speech-dense windows (Demucs, in-process) -> ranked clips that
start and end inside that speaker's speech -> 24 kHz mono wav files.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from audiobox.cli.common import (
    HelpFormatter,
    Parser,
    add_dirs,
    add_speaker_args,
    non_negative_int,
    positive_float,
    show_speakers,
    speaker_note,
)
from audiobox.errors import UserError, run_main

EPILOG = """examples:
  voice-split --url "https://www.youtube.com/watch?v=ID" --start 1:30 --end 6:00 --clips 5
  voice-split --audio interview.mp3 --voice-name host --length 12
  voice-split --audio podcast.wav --demucs-repo ~/models/demucs --interactive --voice-name guest
  voice-split --audio interview.mp3 --list-speakers          # who talks, how long; a sample of each
  voice-split --audio interview.mp3 --speaker 2 --voice-name guest
  voice-split --audio interview.mp3 --match guest_sample.wav --voice-name guest
"""


def add_source_args(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("source")
    one = src.add_mutually_exclusive_group(required=True)
    one.add_argument("--url", help="a video/audio link yt-dlp supports (one video; playlists are refused)")
    one.add_argument("--audio", metavar="FILE", help="a local audio or video file (anything ffmpeg reads)")
    src.add_argument("--start", metavar="TS", help="trim start: 90, 1:30 or 1:02:30.5")
    src.add_argument("--end", metavar="TS", help="trim end, same formats")
    src.add_argument("--cookies", metavar="FILE", help="Netscape cookies.txt for yt-dlp")


def add_split_args(parser: argparse.ArgumentParser, clips_default: int = 5) -> None:
    grp = parser.add_argument_group("clips")
    grp.add_argument(
        "--clips",
        type=non_negative_int,
        default=clips_default,
        help="number of clips to export (0: only the reference)",
    )
    grp.add_argument("--length", type=positive_float, default=12.0, metavar="SEC", help="target clip length")
    grp.add_argument(
        "--max-pause",
        type=positive_float,
        default=0.8,
        metavar="SEC",
        help="longest pause allowed inside a clip",
    )
    grp.add_argument(
        "--max-scan-seconds",
        type=positive_float,
        metavar="SEC",
        help="only look at the first SEC seconds (after --start)",
    )
    add_speaker_args(parser)
    sep = parser.add_argument_group("vocals separation")
    sep.add_argument("--separator-model", default="htdemucs", metavar="NAME", help="Demucs model name")
    sep.add_argument("--demucs-repo", metavar="DIR", help="local Demucs model repo (<name>.yaml + weights)")
    sep.add_argument("--no-separate", action="store_true", help="skip Demucs (clean studio recordings)")
    sep.add_argument(
        "--window-len",
        type=positive_float,
        metavar="SEC",
        help="Demucs window length (default: max(3 x --length, 30))",
    )
    sep.add_argument(
        "--windows",
        type=int,
        metavar="N",
        help="how many speech-dense windows to separate (default: enough for --clips)",
    )
    sep.add_argument("--separator-device", default="cpu", metavar="DEV", help="cpu or cuda[:N]")
    sep.add_argument(
        "--threads", type=int, metavar="N", help="torch CPU threads for Demucs (default: torch's choice)"
    )
    parser.add_argument("--refresh", action="store_true", help="ignore the split caches (they are rewritten)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="voice-split", description=__doc__, epilog=EPILOG, formatter_class=HelpFormatter)
    add_source_args(parser)
    add_split_args(parser)
    reg = parser.add_argument_group("registration")
    reg.add_argument("--voice-name", metavar="SLUG", help="register the best reference clip as this voice")
    reg.add_argument("--display-name", help="display name of the registered voice")
    reg.add_argument("--force", action="store_true", help="replace an existing voice with the same name")
    reg.add_argument(
        "--interactive",
        "-i",
        action="store_true",
        help="choose which clip becomes the reference (needs --voice-name)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    add_dirs(parser, out_help="output root; clips go to OUT/<voice name or source id>/")
    return parser


def split_options(args: argparse.Namespace, out_dir: Path | None):
    """SplitOptions from parsed flags (shared with voice-register)."""
    from audiobox.separate import SeparatorOptions
    from audiobox.sources import parse_timestamp
    from audiobox.speakers import SpeakerChoice
    from audiobox.split import SplitOptions

    if args.windows is not None and args.windows < 1:
        raise UserError("--windows must be at least 1")
    return SplitOptions(
        url=args.url,
        audio=Path(args.audio) if args.audio else None,
        start=parse_timestamp(args.start),
        end=parse_timestamp(args.end),
        cookies=Path(args.cookies) if args.cookies else None,
        clips=args.clips,
        length=args.length,
        max_pause_s=args.max_pause,
        window_s=args.window_len,
        windows=args.windows,
        separate=not args.no_separate,
        max_scan_s=args.max_scan_seconds,
        separator=SeparatorOptions(
            model=args.separator_model,
            repo=Path(args.demucs_repo).expanduser() if args.demucs_repo else None,
            device=args.separator_device,
            threads=args.threads,
        ),
        out_dir=out_dir,
        refresh=args.refresh,
        speaker=SpeakerChoice.parse(args.speaker, args.match),
    )


def check_voice_name(registry, slug: str | None, force: bool) -> None:
    """Fail before any heavy work: bad slug, or an existing voice without --force."""
    if slug is not None:
        registry.ensure_available(slug, force)


def choose_reference(result, console) -> None:
    """--interactive: let the user pick which exported clip becomes the reference."""
    from audiobox.sources import format_timestamp
    from audiobox.split import use_clip_as_reference

    if not result.clips:
        return
    console.print("clips (best first):")
    console.print(
        f"  0  keep the automatic reference ({format_timestamp(result.reference.start)}, "
        f"{result.reference.duration:.1f} s)"
    )
    for clip in result.clips:
        console.print(
            f"  {clip.index}  {clip.path.name if clip.path else ''}  {clip.duration:.1f} s  "
            f"score {clip.score:.3f}"
        )
    while True:
        console.print(f"reference clip [0-{len(result.clips)}, Enter = 0]: ", end="")
        line = sys.stdin.readline()  # the prompt goes to stderr so --json output stays clean
        answer = line.strip()
        if not line or answer in ("", "0"):
            return
        if answer.isdigit() and 1 <= int(answer) <= len(result.clips):
            use_clip_as_reference(result, int(answer))
            return
        console.print(f"type a number from 0 to {len(result.clips)}")


def register_split_voice(registry, slug: str, result, *, display_name: str | None, replace: bool):
    """Register the reference clip as a clone voice (ref.wav + source); a prompt is added later."""
    from audiobox.audio import TTS_SAMPLE_RATE, Audio
    from audiobox.voices import clone_record, ref_record, reference_files

    if result.reference_samples is None:
        raise UserError("no reference clip to register")
    ref = Audio(result.reference_samples, TTS_SAMPLE_RATE)
    record = clone_record(
        display_name=display_name,
        ref=ref_record(
            ref.duration,
            ref.sample_rate,
            None,
            None,
            origin="voice-split",
            source_start=round(result.reference.start, 3),
            source_end=round(result.reference.end, 3),
            measures=result.reference.measures,
        ),
        source=dict(
            result.source.meta,
            trim=[result.trim.start, result.trim.end],
            n_clips=len(result.clips),
            speaker=speaker_note(result),
        ),
    )
    # the clip is both what speaks and what voice-clone later transcribes and re-cuts
    return registry.create(slug, record, write_files=reference_files(ref, ref), replace=replace)


def result_json(result, voice=None) -> dict:
    from audiobox.split import manifest

    data = manifest(result)
    data["out_dir"] = str(result.out_dir) if result.out_dir else None
    data["voice"] = voice.slug if voice else None
    return data


def dispatch(argv) -> int:
    args = build_parser().parse_args(argv)
    from audiobox.paths import resolve_dirs
    from audiobox.voices import VoiceRegistry

    if args.interactive and not args.voice_name:
        raise UserError("--interactive chooses the reference of the voice to register: add --voice-name")
    dirs = resolve_dirs(cache=args.cache, out=args.out)
    registry = VoiceRegistry(dirs.voices)
    check_voice_name(registry, args.voice_name, args.force)
    opts = split_options(args, None)
    opts.validate()

    from rich.console import Console

    from audiobox.split import RichProgress, VoiceSplitter

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    progress = RichProgress(console)
    try:
        splitter = VoiceSplitter(dirs.stage("split"), dirs.stage("downloads"), progress)
        if args.list_speakers:
            return show_speakers(splitter, opts, dirs, args.json, progress)
        splitter.prepare(
            opts
        )  # a bad --match sample or a missing Demucs model fails here, before any download
        source, trim = splitter.resolve(opts)
        opts.out_dir = dirs.work / (args.voice_name or source.source_id)
        result = splitter.run(opts, source, trim)
    finally:
        progress.close()
    if args.interactive:
        choose_reference(result, console)
    voice = None
    if args.voice_name:
        voice = register_split_voice(
            registry, args.voice_name, result, display_name=args.display_name, replace=args.force
        )
    if args.json:
        sys.stdout.write(__import__("json").dumps(result_json(result, voice), indent=2) + "\n")
        return 0
    console.print(
        f"{len(result.clips)} clips in {result.out_dir}"
        + (f" (+ reference.wav, {result.reference.duration:.1f} s)" if result.reference else "")
        + (f"; {speaker_note(result)['text']}" if result.speakers else "")
    )
    console.print(
        f"Demucs ran on {result.stats['separated_s']:.0f} s of {result.stats['audio_s']:.0f} s; "
        f"total {result.timings['total_s']:.1f} s"
    )
    if voice is not None:
        cache_flag = f" --cache {shlex.quote(args.cache)}" if args.cache else ""
        console.print(
            f"registered voice {voice.slug!r} (reference only, no transcript or prompt yet). Next:\n"
            f'  voice-clone synth --voice {voice.slug} --text "..."'
            f"{cache_flag}\n  (transcribes the reference and builds the clone prompt; "
            f"voice-register does split + clone in one step)"
        )
    return 0


def main(argv=None) -> int:
    return run_main(dispatch, argv)


if __name__ == "__main__":
    raise SystemExit(main())
