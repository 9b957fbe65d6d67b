"""voice-clone: turn a recording of a person into a reusable Qwen3-TTS clone prompt (and speak with it).

The reference is decoded at 24 kHz (full bandwidth), the best 3-12 s of speech is chosen with
Silero VAD + quality measures + faster-whisper confidence, transcribed, checked, and turned into a
clone prompt stored in the voice registry (tensors + JSON, tagged with its model).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from audiobox.cli.common import (
    HelpFormatter,
    Parser,
    ProgressView,
    add_asr,
    add_dirs,
    add_generation,
    add_output_format,
    add_runtime,
    add_voice_name,
    generation_fields,
    positive_int,
    print_json,
    print_takes,
    read_text_arg,
    renamed_flag,
    run_subcommand,
    runtime_options,
    sampling_fields,
    stderr_console,
)
from audiobox.cli.timeflags import time_value
from audiobox.errors import UserError, run_main
from audiobox.paths import app_command, resolve_dirs
from audiobox.tts.models import DEFAULT_MODELS

EPILOG = """examples:
  voice-clone prepare-ref --ref-audio interview.mp4                 # pick + transcribe the best 3-12 s
  voice-clone prepare-ref --ref-audio talk.wav --ref-start 12.5 --ref-end 20 --ref-language german
  voice-clone synth --ref-audio talk.wav --voice-name anna --text "Hello, this is my cloned voice."
  voice-clone synth --voice anna --model Qwen/Qwen3-TTS-12Hz-1.7B-Base        # a prompt for another model
  voice-clone synth --ref-audio noisy.wav --ref-text "Exact words said." --voice-name bob --tone calm
  voice-clone self-test
"""

# -- arguments ---------------------------------------------------------------------------------------------


def add_reference_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    src = parser.add_argument_group("reference")
    who = src.add_mutually_exclusive_group(required=required)
    who.add_argument(
        "--ref-audio", metavar="PATH", help="recording of the voice: any file ffmpeg reads (video too)"
    )
    who.add_argument("--voice", metavar="SLUG", help="a registered voice: reuse (or re-cut) its reference")
    src.add_argument(
        "--ref-start",
        type=time_value,
        metavar="TS",
        help="start of the reference span: seconds or m:ss (always applied)",
    )
    src.add_argument(
        "--ref-end", type=time_value, metavar="TS", help="end of the reference span, same formats"
    )
    text = src.add_mutually_exclusive_group()
    text.add_argument(
        "--ref-text",
        help="exactly what is said in the reference (skips whisper). Without "
        "--ref-start/--ref-end it must describe all the speech in the file",
    )
    text.add_argument("--ref-text-file", metavar="FILE", help="--ref-text from a UTF-8 file")
    src.add_argument(
        "--verify-ref-text",
        action="store_true",
        help="also run whisper on the span and stop if it confidently hears different words than --ref-text",
    )
    src.add_argument(
        "--ref-language",
        default="auto",
        help="language of the reference (name or ISO code); passed to whisper so it does not have to guess",
    )
    src.add_argument(
        "--x-vector-only",
        action="store_true",
        help="speaker-embedding-only prompt: needs no transcript "
        "(faster, works for any language, usually less faithful)",
    )
    add_asr(src)
    src.add_argument(
        "--candidates",
        type=positive_int,
        default=5,
        metavar="N",
        help="how many candidate spans to transcribe and score",
    )
    src.add_argument(
        "--min-confidence",
        type=float,
        default=0.37,
        metavar="P",
        help="quality gate: lowest accepted mean token probability of the transcript (0-1)",
    )
    src.add_argument(
        "--interactive", "-i", action="store_true", help="show the scored candidates and choose one"
    )
    src.add_argument(
        "--force-bad-ref", action="store_true", help="keep a reference that fails the quality gate"
    )
    src.add_argument(
        "--refresh", action="store_true", help="ignore every cache (decode, VAD, transcripts, prompt)"
    )


def add_registry_args(parser: argparse.ArgumentParser) -> None:
    reg = parser.add_argument_group("registry")
    add_voice_name(reg, "register the result under this name")
    renamed_flag(reg, "--replace", "--force (and --force, which ignored the caches, is now --refresh)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="voice-clone", description=__doc__, epilog=EPILOG, formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)

    prep = sub.add_parser(
        "prepare-ref",
        help="choose, check and transcribe the reference (no TTS model needed)",
        formatter_class=HelpFormatter,
        description="Decode the recording at 24 kHz, find speech, "
        "score 3-12 s candidates, transcribe and check the winner. With --voice-name the "
        "reference is registered (build its prompt later with `synth --voice SLUG`).",
    )
    add_reference_args(prep)
    add_registry_args(prep)
    prep.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    add_dirs(prep, out=False)

    synth = sub.add_parser(
        "synth",
        help="prepare (or reuse) the reference, build the prompt, speak, register",
        formatter_class=HelpFormatter,
        description="Everything prepare-ref does, then build the "
        "clone prompt with a Base model (cached), register it with --voice-name (or into --voice), "
        "and speak --text/--text-file if given.",
    )
    add_reference_args(synth)
    what = synth.add_mutually_exclusive_group()
    what.add_argument(
        "--text", help="what to say (optional with --voice-name/--voice: then only the prompt is built)"
    )
    what.add_argument("--text-file", metavar="FILE", help="UTF-8 text file")
    add_registry_args(synth)
    synth.add_argument(
        "--tone", help="label the prompt with a tone (e.g. calm, excited): one voice, several references"
    )
    synth.add_argument(
        "--language", default="auto", help="language of --text (auto, or one of the 10 Qwen languages)"
    )
    synth.add_argument("--variants", type=positive_int, default=1, help="number of takes")
    synth.add_argument("--chunk", action="store_true", help="split long text at sentence boundaries")
    synth.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    add_output_format(synth)
    add_generation(synth)
    add_runtime(synth, f"Base model id or dir (default {DEFAULT_MODELS['base']})")
    add_dirs(synth)

    st = sub.add_parser(
        "self-test",
        help="end-to-end check of this installation on a reference it makes itself",
        formatter_class=HelpFormatter,
        description="Speaks a reference offline (Piper if installed, "
        "else espeak-ng), runs prepare-ref and whisper on it, builds ICL and x-vector prompts and "
        "speaks a sentence. No download: models must already be cached (or given as dirs).",
    )
    add_asr(st)
    st.add_argument("--skip-whisper", action="store_true", help="do not run the whisper check")
    st.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    add_generation(st)
    add_runtime(st, f"Base model id or dir (default {DEFAULT_MODELS['base']})")
    add_dirs(st)
    return parser


# -- shared steps ------------------------------------------------------------------------------------------


def ref_options(args, chooser=None):
    from audiobox.languages import normalize_language
    from audiobox.refprep import RefOptions

    ref_text = (
        read_text_arg(args.ref_text, args.ref_text_file) if (args.ref_text or args.ref_text_file) else None
    )
    if ref_text is not None:
        ref_text = " ".join(ref_text.split())  # an empty one is refused by RefOptions.check
    return RefOptions(
        ref_start=args.ref_start,
        ref_end=args.ref_end,
        ref_text=ref_text,
        language=normalize_language(args.ref_language),
        x_vector_only=args.x_vector_only,
        **({"asr_model": args.asr_model} if args.asr_model else {}),
        asr_device=args.asr_device,
        max_candidates=args.candidates,
        min_confidence=args.min_confidence,
        force=args.refresh,
        force_bad_ref=args.force_bad_ref,
        verify_ref_text=args.verify_ref_text,
        chooser=chooser,
    )


def clone_request(args, console, speech=None):
    """The library request from the parsed flags (prepare-ref and synth share the reference flags)."""
    from audiobox.clone import CloneRequest

    chooser = interactive_chooser(console) if args.interactive else None
    return CloneRequest(
        ref_audio=Path(args.ref_audio) if args.ref_audio else None,
        voice=args.voice,
        ref=ref_options(args, chooser),
        recut=_reprocessing_requested(args),
        voice_name=args.voice_name,
        display_name=args.display_name,
        replace=args.force,
        tone=getattr(args, "tone", None),
        model=getattr(args, "model", None),
        speech=speech,
    )


def _reprocessing_requested(args) -> bool:
    """New bounds, a new transcript or a new choice re-cut a registered voice's reference; --refresh alone
    only rebuilds its prompt (it must not silently replace a reference the user picked)."""
    return (
        any(v is not None for v in (args.ref_start, args.ref_end, args.ref_text, args.ref_text_file))
        or args.interactive
    )


def interactive_chooser(console):
    def choose(candidates, best: int) -> int:
        show_candidates(console, candidates, best)
        valid = {c.index for c in candidates}
        for _ in range(3):
            # the question goes to stderr so that --json output on stdout stays clean
            console.print(f"choose a candidate [{min(valid)}-{max(valid)}] (Enter = {best}): ", end="")
            line = sys.stdin.readline()
            if not line:
                raise UserError("--interactive needs an answer on stdin (none was given)")
            answer = line.strip()
            if not answer:
                return best
            if answer.isdigit() and int(answer) in valid:
                return int(answer)
            console.print(f"not a candidate number: {answer!r}")
        raise UserError("no valid candidate chosen")

    return choose


def show_candidates(console, candidates, best: int) -> None:
    """A compact score table (the winner starred), then each candidate's transcript and problems."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="reference candidates", title_justify="left", box=None, pad_edge=False)
    for col in ("#", "span s", "score", "conf", "SNR dB", "clip %", "silence %", "ok"):
        table.add_column(col, no_wrap=True, justify="right" if col not in ("#", "span s", "ok") else "left")
    for c in candidates:
        q = c.quality or {}
        table.add_row(
            f"{c.index}{'*' if c.index == best else ''}",
            f"{c.start:.1f}-{c.end:.1f}",
            f"{c.score:.2f}",
            "-" if c.confidence is None else f"{c.confidence:.2f}",
            f"{q.get('snr_db', 0):.0f}",
            f"{100 * q.get('clipping_ratio', 0):.2f}",
            f"{100 * q.get('silence_ratio', 0):.0f}",
            "yes" if not c.problems else "no",
        )
    console.print(table)
    for c in candidates:
        if c.transcript:
            console.print(f"  {c.index}: {escape(c.transcript[:100])}", markup=True)
        for problem in c.problems:
            console.print(f"     - {escape(problem)}")


def print_prepared(console, prepared) -> None:
    from rich.markup import escape

    if prepared.candidates and len(prepared.candidates) > 1:
        show_candidates(console, prepared.candidates, prepared.chosen_index)
    console.print(
        f"reference: {prepared.start:.2f}-{prepared.end:.2f} s of {prepared.source} "
        f"({prepared.duration:.1f} s, chosen by {prepared.chosen_by}"
        + (f", score {prepared.score:.2f}" if prepared.score is not None else "")
        + ")"
    )
    if prepared.transcript:
        conf = f" (confidence {prepared.confidence:.2f})" if prepared.confidence is not None else ""
        console.print(f"transcript ({prepared.transcript_source}){conf}: {escape(prepared.transcript)}")
    for warning in prepared.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    console.print(f"segment: {prepared.segment_path}")


# -- commands ------------------------------------------------------------------------------------------------


def cmd_prepare_ref(args) -> int:
    from audiobox.clone import prepare

    dirs = resolve_dirs(args.cache)
    console = stderr_console()
    request = clone_request(args, console)
    with ProgressView(console) as progress:
        result = prepare(request, dirs, progress)
    if args.json:
        print_json(result.to_dict())
        return 0
    print_prepared(console, result.reference)
    if result.voice:
        removed = result.removed_prompts
        console.print(
            f"registered reference of voice {result.voice!r}"
            + (f" (removed {len(removed)} prompts built from the old reference)" if removed else "")
        )
        console.print(
            f'next: {app_command("voice-clone")} synth --voice {result.voice} --text "Hello" (builds its prompt)'
        )
    return 0


def cmd_synth(args) -> int:
    from audiobox.clone import clone
    from audiobox.speak import SpeakRequest
    from audiobox.tts.pool import ModelPool
    from audiobox.tts.text import clean_text

    dirs = resolve_dirs(args.cache, args.out)
    console = stderr_console()
    given = args.text is not None or args.text_file  # `--text ""` is given, and empty: refused like speak
    text = clean_text(read_text_arg(args.text, args.text_file)) if given else ""
    speech = None
    if text:
        speech = SpeakRequest(
            text=text,
            language=args.language,
            chunk=args.chunk,
            app="voice-clone synth",
            **generation_fields(args),
        )
    request = clone_request(args, console, speech)
    with ProgressView(console) as progress:
        pool = ModelPool(runtime_options(args), args.backend, progress)
        result = clone(request, dirs, pool, progress)
    if args.json:
        print_json(result.to_dict())
        return 0
    print_prepared(console, result.reference)
    if result.registered:
        reg = result.registered
        console.print(
            f"voice {reg.voice!r}: prompt {reg.prompt_id} ({'reused' if reg.prompt_reused else 'added'})"
        )
    if result.spoken:
        print_takes(console, result.spoken)
    return 0


# -- self-test ---------------------------------------------------------------------------------------------


def cmd_self_test(args) -> int:
    from audiobox.selftest import SelfTestRequest, run_self_test
    from audiobox.tts.pool import ModelPool

    dirs = resolve_dirs(args.cache, args.out)
    console = stderr_console()
    request = SelfTestRequest(
        model=args.model,
        asr_model=args.asr_model,
        asr_device=args.asr_device,
        skip_whisper=args.skip_whisper,
        **sampling_fields(args),
    )

    def show(check) -> None:
        colour = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "dim"}[check.status]
        console.print(f"[{colour}]{check.status:>4}[/{colour}]  {check.name}: {check.detail}")
        if "seed" in check.extra:  # the detail names the output file
            console.print(f"      seed {check.extra['seed']}")

    with ProgressView(console) as progress:
        pool = ModelPool(runtime_options(args), args.backend, progress)
        result = run_self_test(request, dirs, pool, on_check=show, progress=progress)
    if args.json:
        print_json(result.to_dict())
    else:
        failed = result.failed
        console.print("self-test " + ("passed" if not failed else f"FAILED ({len(failed)} checks)"))
        console.print(f"results: {result.run_dir / 'self-test.json'}")
    return 0 if result.ok else 1


COMMANDS = {"prepare-ref": cmd_prepare_ref, "synth": cmd_synth, "self-test": cmd_self_test}


def main(argv=None) -> int:
    return run_main(lambda args: run_subcommand(build_parser, COMMANDS, args), argv)


if __name__ == "__main__":
    raise SystemExit(main())
