"""The source and clip flags voice-split and voice-register share, and the --interactive clip pick."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from audiobox.cli.common import (
    add_speaker_args,
    add_threads,
    non_negative_int,
)
from audiobox.cli.timeflags import positive_time, time_value
from audiobox.errors import UserError


def add_source_args(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("source")
    one = src.add_mutually_exclusive_group(required=True)
    one.add_argument("--url", help="a video/audio link yt-dlp supports (one video; playlists are refused)")
    one.add_argument("--audio", metavar="FILE", help="a local audio or video file (anything ffmpeg reads)")
    src.add_argument("--start", type=time_value, metavar="TS", help="trim start: 90, 1:30 or 1:02:30.5")
    src.add_argument("--end", type=time_value, metavar="TS", help="trim end, same formats")
    src.add_argument("--cookies", metavar="FILE", help="Netscape cookies.txt for yt-dlp")
    src.add_argument(
        "--max-download-mb",
        type=float,
        default=2000,
        metavar="MB",
        help="refuse a link whose download is larger than this (default: 2000 MB)",
    )
    src.add_argument(
        "--max-duration",
        type=positive_time,
        metavar="TS",
        default="5:00:00",
        help="refuse a link whose recording is longer than this (default: 5:00:00); live streams are always refused",
    )


def add_split_args(parser: argparse.ArgumentParser, clips_default: int = 5) -> None:
    grp = parser.add_argument_group("clips")
    grp.add_argument(
        "--clips",
        type=non_negative_int,
        default=clips_default,
        help="number of clips to export (0: only the reference)",
    )
    grp.add_argument(
        "--length",
        type=positive_time,
        default=12.0,
        metavar="SEC",
        help="target clip length (seconds or m:ss)",
    )
    grp.add_argument(
        "--max-pause",
        type=positive_time,
        default=0.8,
        metavar="SEC",
        help="longest pause allowed inside a clip",
    )
    grp.add_argument(
        "--max-scan-seconds",
        type=positive_time,
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
        type=positive_time,
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
    add_threads(sep, "separator")
    parser.add_argument("--refresh", action="store_true", help="ignore the split caches (they are rewritten)")


def split_options(args: argparse.Namespace, out_dir: Path | None):
    """SplitOptions from parsed flags (shared with voice-register)."""
    from audiobox.separate import SeparatorOptions
    from audiobox.sources import parse_timestamp, source_limits
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
        limits=source_limits(args.max_download_mb, args.max_duration),
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
            threads=args.separator_threads,
        ),
        out_dir=out_dir,
        refresh=args.refresh,
        speaker=SpeakerChoice.parse(args.speaker, args.match),
    )


def clip_chooser(progress, console):
    """The --interactive callback for the library's workflows: the prompt replaces the bars while
    the user picks."""

    def choose(split) -> None:
        progress.close()
        choose_reference(split, console)

    return choose


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
