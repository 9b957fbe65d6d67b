"""Argument groups and output helpers shared by the apps."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from audiobox.audio import OUTPUT_FORMATS
from audiobox.errors import UserError
from audiobox.tts.runtime import ATTENTIONS, DTYPES, RuntimeOptions


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows a default only where there is one worth reading (not None/False)."""

    def _get_help_string(self, action):
        help_text = action.help or ""
        if (
            action.default not in (None, False, argparse.SUPPRESS)
            and "%(default)" not in help_text
            and action.option_strings
        ):
            help_text += " (default: %(default)s)"
        return help_text


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line + exit 2 like every other user error."""

    def error(self, message: str):  # noqa: D102
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def run_subcommand(build_parser, commands: dict, argv) -> int:
    """Parse argv and run the handler of the chosen sub-command."""
    args = build_parser().parse_args(argv)
    return commands[args.command](args)


def add_dirs(parser: argparse.ArgumentParser, out: bool = True, out_help: str = "output root") -> None:
    group = parser.add_argument_group("locations")
    group.add_argument(
        "--cache",
        metavar="DIR",
        help="cache dir: voices, models, stage caches "
        "(default: $AUDIOBOX_CACHE, /cache in the container, ./cache in a checkout)",
    )
    if out:
        group.add_argument(
            "--out",
            metavar="DIR",
            help=f"{out_help} (default: $AUDIOBOX_WORK, /work in the container, ./work in a checkout)",
        )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")


def add_runtime(parser: argparse.ArgumentParser, model_help: str) -> None:
    group = parser.add_argument_group("model and runtime")
    group.add_argument("--model", metavar="ID_OR_DIR", help=model_help)
    group.add_argument(
        "--device", default="auto", help="auto, cpu, cuda or cuda:N (env TORCH_DEVICE overrides auto)"
    )
    group.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPES,
        help="auto: bf16 on GPUs with SM>=8, fp16 on SM7.x, else fp32; on CPU bf16 where the CPU has "
        "native bf16, else fp32. int8 (CPU, opt-in): dynamic int8 weights, measured 4x faster "
        "than upstream fp32 on a 2-core CPU, bf16 about 2.7x (docs/benchmarks.md); int8 "
        "output differs slightly",
    )
    group.add_argument(
        "--attention", default="auto", choices=ATTENTIONS, help="auto: flash-attn when usable, else sdpa"
    )
    add_threads(group, "tts")
    group.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "upstream", "fast"),
        help="decode loop: our fast path when it supports the model, else upstream qwen-tts",
    )


THREAD_FLAGS = {  # every thread flag names the engine it sizes: engine -> (flag, name, default)
    "tts": ("--tts-threads", "Qwen3-TTS", "all CPUs; 1 for fp32 on a CPU with 2 or fewer"),
    "separator": ("--separator-threads", "Demucs", "torch's choice"),
}


def add_threads(group, engine: str) -> None:
    """--tts-threads or --separator-threads; the former --threads fails naming both."""
    flag, name, default = THREAD_FLAGS[engine]
    group.add_argument(
        flag, type=positive_int, metavar="N", help=f"CPU threads for {name} (default: {default})"
    )
    renamed_flag(group, "--threads", " or ".join(f"{f} ({n})" for f, n, _ in THREAD_FLAGS.values()))


def add_voice_name(group, name_help: str, required: bool = False) -> None:
    """--voice-name, --display-name and --force: the same three flags wherever a command registers a voice."""
    group.add_argument("--voice-name", required=required, metavar="SLUG", help=name_help)
    group.add_argument("--display-name", help="human-readable name stored with the voice")
    group.add_argument("--force", action="store_true", help="replace an existing voice of that name")


def add_asr(group) -> None:
    """--asr-model / --asr-device: the faster-whisper model of every app (transcripts, take checks)."""
    group.add_argument(
        "--asr-model",
        metavar="NAME_OR_DIR",
        help="faster-whisper model: a size (tiny, base, small, medium, large-v3...), a hub id or a local "
        "CTranslate2 dir (default: small; downloads go to <cache>/asr, see voice-models)",
    )
    group.add_argument("--asr-device", default="auto", help="auto, cpu or cuda for faster-whisper")
    renamed_flag(group, "--whisper-model", "--asr-model")
    renamed_flag(group, "--whisper-device", "--asr-device")


def renamed_flag(group, old: str, new: str) -> None:
    """A flag's former name, hidden: it fails with one line naming the flag to use now."""

    class Renamed(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            parser.error(f"{old} is now {new}")

    if old not in getattr(group, "_option_string_actions", {}):
        group.add_argument(old, nargs="?", action=Renamed, help=argparse.SUPPRESS)


def add_generation(parser: argparse.ArgumentParser) -> None:
    from audiobox.tts.settings import PROFILES

    group = parser.add_argument_group("generation")
    group.add_argument(
        "--profile",
        choices=list(PROFILES),
        help="sampling preset (default: the voice's saved default, else balanced)",
    )

    def preset(knob: str) -> str:
        return ", ".join(f"{name} {values[knob]}" for name, values in PROFILES.items())

    group.add_argument(
        "--temperature",
        type=float,
        metavar="T",
        help=f"sampling temperature, (0, 5]: lower is steadier, higher more varied ({preset('temperature')})",
    )
    group.add_argument(
        "--top-p",
        type=float,
        metavar="P",
        help=f"nucleus sampling, (0, 1]: draw from the likeliest tokens that add up to P ({preset('top_p')})",
    )
    group.add_argument(
        "--top-k", type=int, metavar="K", help=f"draw from the K likeliest tokens only ({preset('top_k')})"
    )
    group.add_argument(
        "--repetition-penalty",
        type=float,
        metavar="R",
        help="above 1 discourages repeating audio tokens (stuck sounds, loops) "
        f"({preset('repetition_penalty')})",
    )
    group.add_argument(
        "--max-new-tokens",
        type=int,
        metavar="N",
        help="most audio frames per call (80 ms each), a hard stop for runaway takes "
        "(default: sized from the text, capped)",
    )
    group.add_argument("--greedy", action="store_true", help="deterministic decoding (no sampling)")
    group.add_argument(
        "--seed", type=int, help="seed of the run; the same seed and settings reproduce the takes"
    )


def add_output_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", default="wav", choices=OUTPUT_FORMATS, help="audio format of the takes")


def runtime_options(args: argparse.Namespace) -> RuntimeOptions:
    return RuntimeOptions(
        device=args.device, dtype=args.dtype, attention=args.attention, threads=args.tts_threads
    )


def explicit_knobs(args: argparse.Namespace) -> dict:
    return {
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "repetition_penalty": args.repetition_penalty,
        "max_new_tokens": args.max_new_tokens,
    }


def sampling_fields(args: argparse.Namespace) -> dict:
    """The add_generation flags as the keyword fields every request that generates takes
    (SpeakRequest, BatchOptions, DesignRequest, SelfTestRequest)."""
    return {"profile": args.profile, "knobs": explicit_knobs(args), "greedy": args.greedy, "seed": args.seed}


def generation_fields(args: argparse.Namespace) -> dict:
    """sampling_fields plus --variants and --format, which SpeakRequest and BatchOptions share."""
    return {**sampling_fields(args), "variants": args.variants, "format": args.format}


def _bounded(cast, minimum, strict: bool, noun: str):
    """An argparse type: `cast` the value and check it against `minimum`, with a one-line message."""

    def convert(value: str):
        try:
            number = cast(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not {noun}") from None
        if number < minimum or (strict and number == minimum):
            bound = f"greater than {minimum}" if strict else f"at least {minimum}"
            raise argparse.ArgumentTypeError(f"{value!r} must be {bound}")
        return number

    return convert


positive_int = _bounded(int, 1, False, "a whole number")
non_negative_int = _bounded(int, 0, False, "a whole number")
positive_float = _bounded(float, 0.0, True, "a number")


def read_text_arg(text: str | None, text_file: str | None) -> str:
    """--text, or --text-file FILE ('-' reads standard input)."""
    if text_file == "-":
        data = sys.stdin.buffer.read()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError("standard input is not UTF-8 text") from exc
    if text_file:
        path = Path(text_file)
        if not path.is_file():
            raise UserError(f"text file not found: {path}")
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(f"text file {path} is not UTF-8 text") from exc
    return text or ""


def add_speaker_args(parser: argparse.ArgumentParser) -> None:
    """voice-split/voice-register: whose voice to keep when a recording has several."""
    who = parser.add_argument_group("speaker (interviews, podcasts: several voices)")
    who.add_argument(
        "--speaker",
        default="auto",
        metavar="auto|N",
        help="whose clips: auto = the speaker with the most speech; N = the Nth by speech time "
        "(see --list-speakers). Clips and the reference come from that speaker only",
    )
    who.add_argument(
        "--match",
        metavar="FILE",
        help="the speaker whose voice is closest to this short sample (a few seconds)",
    )
    who.add_argument(
        "--list-speakers",
        action="store_true",
        help="print the speakers found (speech time, turns, a short sample wav of each to listen to) and stop",
    )


def show_speakers(opts, dirs, as_json: bool) -> int:
    """--list-speakers (voice-split, voice-register): find the speakers, write a sample of each, print
    them (or JSON) and stop."""
    from audiobox.split import VoiceSplitter

    with ProgressView() as progress:
        splitter = VoiceSplitter(dirs.stage("split"), dirs.stage("downloads"), progress)
        listing = splitter.speaker_listing(opts, dirs.work)
    source = listing.source
    if as_json:
        print_json(listing.to_json())
        return 0
    data = listing.to_json()["speakers"]
    found = data["found"]
    print(
        f"{len(found)} speaker{'s' if len(found) != 1 else ''} in {source.path.name} "
        f"({listing.speech_s:.1f} s of speech in {listing.audio_s:.1f} s"
        + (f"; {data['unclear_s']:.1f} s unclear: overlapping or too short" if data["unclear_s"] else "")
        + ")"
    )
    for entry in found:
        mark = f"   <- chosen: {data['reason']}" if entry["id"] == data["chosen"] else ""
        match = f", {entry['match_similarity']:.2f} like the sample" if "match_similarity" in entry else ""
        print(
            f"  speaker {entry['id']}: {entry['speech_s']:6.1f} s speech, {entry['turns']:3d} turns, "
            f"{entry['clean_s']:6.1f} s clean{match}{mark}"
        )
        if entry["sample"]:
            print(f"             listen: {entry['sample']}")
    print(
        "pick one with --speaker N (or --match FILE); clips and the reference then come from that voice only"
    )
    return 0


def print_json(data, file=None) -> None:
    out = file or sys.stdout
    out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    out.flush()


def stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def print_takes(console, result, output: str | None = None) -> None:
    """After every run that speaks: each take's file, the metadata, the seed that repeats it, -o's file."""
    for take in result.meta["takes"]:
        console.print(
            f"take {take['take']}: {result.run_dir / take['file']}  "
            f"{take['duration_sec']:.2f} s audio, RTF {take['rtf']:.2f}"
        )
    console.print(f"metadata: {result.meta_path}")
    seed = result.meta["seed"]
    console.print(f"seed: {seed} (--seed {seed} with the same settings repeats this run)")
    if output:
        console.print(f"output: {output}")


class ProgressView:
    """Shows the library's progress events (audiobox.progress) on stderr.

    On a terminal: one rich bar per stage. Otherwise (logs, CI, a pipe): plain lines, a start and an
    end line per stage and at most one update line per stage every `every_s` seconds (default:
    $AUDIOBOX_PROGRESS_SECONDS, else 5), so a long run never goes silent. Nothing is written before
    the first event, so a run that fails its input checks still leaves only its one error line.
    """

    LABELS = {
        "download": "download",
        "vad": "speech map (VAD)",
        "speakers": "speakers",
        "separate": "vocals (Demucs)",
        "export": "export clips",
        "load": "load model",
        "synthesize": "synthesize",
        "batch": "batch",
    }

    def __init__(self, console=None, every_s: float | None = None, clock=None):
        import time

        self.console = console or stderr_console()
        self.every_s = every_s if every_s is not None else _seconds_env("AUDIOBOX_PROGRESS_SECONDS", 5.0)
        self.clock = clock or time.monotonic
        self.began = self.clock()
        self._bar = None
        self._tasks: dict[str, int] = {}
        self._started: dict[str, float] = {}
        self._last_line: dict[str, float] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
            self._tasks.clear()

    def __call__(self, event) -> None:
        if self.console.is_terminal:
            self._draw(event)
        else:
            self._line(event)

    def _label(self, stage: str) -> str:
        return self.LABELS.get(stage, stage)

    # -- plain lines (not a terminal)
    def _line(self, event) -> None:
        now = self.clock()
        stage = event.stage
        if event.phase == "start":
            self._started[stage] = now
            self._last_line[stage] = now
            size = f" ({_amount(event.total, event.unit)})" if event.total else ""
            text = f"started{size}" + (f": {event.message}" if event.message else "")
        elif event.phase == "end":
            took = now - self._started.pop(stage, now)
            self._last_line.pop(stage, None)
            text = f"done in {took:.1f} s" + (f" ({event.message})" if event.message else "")
        elif event.done is None:
            text = event.message
        else:
            if now - self._last_line.get(stage, -float("inf")) < self.every_s:
                return
            self._last_line[stage] = now
            self._started.setdefault(stage, now)
            text = _fraction(event.done, event.total, event.unit) + (
                f" {event.message}" if event.message else ""
            )
        stream = self.console.file
        stream.write(f"[{now - self.began:7.1f} s] {self._label(stage)}: {text}\n")
        stream.flush()

    # -- rich bars (a terminal)
    def _draw(self, event) -> None:
        task = self._tasks.get(event.stage)
        if task is None and event.phase == "update" and event.done is None:  # a note of its own
            from rich.markup import escape

            self.console.print(f"[dim]{self._label(event.stage)}: {escape(event.message)}[/dim]")
            return
        bar = self._bar or self._open_bar()
        if task is None:
            task = self._tasks[event.stage] = bar.add_task(
                self._label(event.stage), total=event.total, note="", amount=""
            )
        elif event.phase == "start":
            bar.reset(task, total=event.total, note="", amount="")
        if event.phase == "start":
            bar.update(task, note=event.message)
        elif event.phase == "update":
            fields = {"note": event.message} if event.message else {}
            if event.total is not None:
                fields["total"] = event.total
            if event.done is not None:
                fields.update(completed=event.done, amount=_fraction(event.done, event.total, event.unit))
            bar.update(task, **fields)
        else:
            total = bar.tasks[self._index(task)].total or 1
            amount = _fraction(event.total, event.total, event.unit) if event.total else ""
            bar.update(task, total=total, completed=total, note=event.message, amount=amount)
            bar.stop_task(task)

    def _index(self, task) -> int:
        return [t.id for t in self._bar.tasks].index(task)

    def _open_bar(self):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("{task.description:<18}", markup=False),
            BarColumn(),
            TextColumn("{task.fields[amount]}", markup=False),
            TimeElapsedColumn(),
            TextColumn("{task.fields[note]}", markup=False),
            console=self.console,
        )
        self._bar.start()
        return self._bar


def _seconds_env(name: str, default: float) -> float:
    """A number of seconds from the environment; a value that is not one is refused by name."""
    import os

    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise UserError(f"{name}={value!r} is not a number of seconds") from None
    if seconds < 0:
        raise UserError(f"{name}={value!r} must be at least 0")
    return seconds


def _amount(value: float | None, unit: str) -> str:
    if value is None:
        return "?"
    if unit == "bytes":
        return f"{value / 1e6:.1f} MB"
    if unit == "s":
        return f"{value:.0f} s"
    return f"{value:g} {unit}".strip()


def _fraction(done: float, total: float | None, unit: str) -> str:
    """'40% (12 of 30 s)', or just the amount when the total is not known."""
    if not total:
        return _amount(done, unit)
    return f"{100 * done / total:3.0f}% ({_amount(done, unit)} of {_amount(total, unit)})"


def scoreboard_table(board, title: str | None = None):
    """The take checks' scoreboard (audiobox.takes) as a rich Table: one row per take, best first."""
    from rich.table import Table

    table = Table(title=title or "takes", show_lines=False)
    for column, justify in (
        ("take", "right"),
        ("score", "right"),
        (board.metric.upper(), "right"),
        ("sim", "right"),
        ("pace", "right"),
        ("clip %", "right"),
        ("silence in/out s", "right"),
        ("SNR dB", "right"),
    ):
        table.add_column(column, justify=justify, no_wrap=True)
    table.add_column("verdict", justify="left", overflow="fold", min_width=12)
    for take in sorted(board.takes, key=lambda t: (t.rank or 10**6, t.index)):
        acoustics = take.acoustics
        verdict = (
            "[green]best[/]"
            if take.index == board.best_index
            else ("ok" if take.passed else "[red]" + ", ".join(c.name for c in take.failures) + "[/]")
        )
        table.add_row(
            str(take.index),
            f"{take.score:.3f}",
            _fmt(take.error_rate, "{:.2f}"),
            _fmt(take.similarity, "{:.2f}"),
            _fmt(take.pace_ratio, "{:.2f}x"),
            _fmt(_pct(acoustics.get("clipping_ratio")), "{:.2f}"),
            f"{_fmt(acoustics.get('leading_silence_sec'), '{:.1f}')}/{_fmt(acoustics.get('trailing_silence_sec'), '{:.1f}')}",
            _fmt(acoustics.get("snr_db"), "{:.0f}"),
            verdict,
        )
    return table


def _fmt(value, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def _pct(value):
    return None if value is None else 100.0 * value
