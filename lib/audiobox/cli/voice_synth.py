"""voice-synth: speak with a registered voice, a built-in speaker or a designed voice; manage voices."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from audiobox.cli.batch import add_batch_parser, cmd_batch
from audiobox.cli.common import (
    HelpFormatter,
    Parser,
    ProgressView,
    add_dirs,
    add_generation,
    add_output_format,
    add_runtime,
    add_voice_name,
    explicit_knobs,
    generation_fields,
    positive_int,
    print_json,
    print_takes,
    read_text_arg,
    run_subcommand,
    runtime_options,
    sampling_fields,
    scoreboard_table,
    stderr_console,
)
from audiobox.cli.timeflags import time_value
from audiobox.errors import UserError, run_main
from audiobox.paths import app_command, resolve_dirs
from audiobox.tts.models import DEFAULT_MODELS

ASR_CHOICES = ("auto", "whisper", "sphinx", "none")  # audiobox.takes.load_transcriber
EPILOG = """examples:
  voice-synth speak --speaker Ryan --text "Hello"
  voice-synth speak --voice narrator --text-file chapter1.txt --chunk --variants 3
  voice-synth list-voices --json
  voice-synth design-voice --voice-name storyteller --instruct "A warm elderly male voice" --ref-text "Once upon a time..."
"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="voice-synth", description=__doc__, epilog=EPILOG, formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)

    speak = sub.add_parser(
        "speak", help="speak text with a voice or a built-in speaker", formatter_class=HelpFormatter
    )
    who = speak.add_mutually_exclusive_group(required=True)
    who.add_argument("--voice", metavar="SLUG", help="a registered voice (see list-voices)")
    who.add_argument("--speaker", metavar="NAME", help="a built-in CustomVoice speaker (see list-speakers)")
    what = speak.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", help="the text to speak")
    what.add_argument("--text-file", metavar="FILE", help="UTF-8 text file; - reads standard input")
    speak.add_argument("--instruct", help="how to say it (built-in speakers, 1.7B CustomVoice)")
    speak.add_argument(
        "--instruct-style", metavar="NAME", help="a preset instead of --instruct (see list-styles)"
    )
    speak.add_argument("--tone", help="a tone registered with the voice")
    speak.add_argument(
        "--language", default="auto", help="auto or one of the 10 Qwen3-TTS languages (name or ISO code)"
    )
    speak.add_argument(
        "--variants",
        type=positive_int,
        default=1,
        metavar="N",
        help="number of takes, generated in batched calls",
    )
    speak.add_argument("--chunk", action="store_true", help="split long text at sentence boundaries")
    speak.add_argument(
        "--pause",
        type=time_value,
        default=0.3,
        metavar="SEC",
        help="silence between chunks (seconds or m:ss)",
    )
    out = speak.add_mutually_exclusive_group()
    out.add_argument("--out", metavar="DIR", help="output root: takes go to DIR/<voice>/<timestamp>-<id>/")
    out.add_argument("--out-exact", metavar="DIR", help="write the takes straight into DIR")
    live = speak.add_mutually_exclusive_group()
    live.add_argument(
        "--stream",
        action="store_true",
        help="write the take while it is spoken (chunks of audio as frames are made; wav/flac/ogg)",
    )
    live.add_argument(
        "--stdout",
        nargs="?",
        const="wav",
        choices=("wav", "pcm"),
        metavar="wav|pcm",
        help="stream the take to standard output as WAV (default) or raw 16-bit 24 kHz mono PCM, "
        "e.g. `... --stdout | ffplay -`; nothing is written to disk and --json goes to stderr",
    )
    speak.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="also write the take (the best one with --select-best) to FILE; its extension "
        "(.wav .flac .mp3 .ogg) sets the format. The run folder is written as usual",
    )
    speak.add_argument("--json-result", metavar="FILE", help="also write a compact result JSON here")
    speak.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    speak.add_argument(
        "--save-profile-default",
        action="store_true",
        help="remember --profile and the knobs as this voice's defaults",
    )
    add_output_format(speak)
    add_generation(speak)
    add_runtime(
        speak,
        "model id or dir (default: the model the voice was built for; "
        f"{DEFAULT_MODELS['custom_voice']} for --speaker)",
    )
    add_dirs(speak, out=False)
    add_take_checks(speak)

    lv = sub.add_parser(
        "list-voices", help="list registered voices (no model is loaded)", formatter_class=HelpFormatter
    )
    lv.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    add_dirs(lv, out=False)

    ls = sub.add_parser(
        "list-speakers", help="list built-in speakers (read from config.json)", formatter_class=HelpFormatter
    )
    ls.add_argument(
        "--model",
        default=DEFAULT_MODELS["custom_voice"],
        metavar="ID_OR_DIR",
        help="CustomVoice model whose speakers to list",
    )
    ls.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    add_dirs(ls, out=False)

    st = sub.add_parser(
        "list-styles",
        help="list the --instruct-style presets and what each says",
        formatter_class=HelpFormatter,
    )
    st.add_argument("--json", action="store_true", help="print the styles as JSON on stdout")

    cap = sub.add_parser("capabilities", help="what this installation can do", formatter_class=HelpFormatter)
    cap.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    cap.add_argument(
        "--probe", action="store_true", help="also import torch to report device, dtype and attention"
    )
    add_dirs(cap, out=False)

    rb = sub.add_parser(
        "register-builtin",
        help="register a built-in speaker (+ instruct presets) as a named voice",
        formatter_class=HelpFormatter,
    )
    add_voice_name(rb, "name of the new voice (lower-case, digits, -)", required=True)
    rb.add_argument("--speaker", required=True, help="the built-in speaker (see list-speakers)")
    rb.add_argument(
        "--model",
        default=DEFAULT_MODELS["custom_voice"],
        metavar="ID_OR_DIR",
        help="CustomVoice model the voice speaks with",
    )
    dflt = rb.add_mutually_exclusive_group()
    dflt.add_argument("--instruct-default", help="instruction used when speak gets none")
    dflt.add_argument(
        "--instruct-default-style", metavar="NAME", help="the same, as a preset (see list-styles)"
    )
    rb.add_argument("--tone", help="add a named tone with --tone-instruct / --tone-instruct-style")
    tone = rb.add_mutually_exclusive_group()
    tone.add_argument("--tone-instruct", help="the instruction of --tone")
    tone.add_argument("--tone-instruct-style", metavar="NAME", help="the instruction of --tone, as a preset")
    rb.add_argument("--language-default", default="auto", help="language used when speak gets none")
    rb.add_argument("--description", default="", help="free text stored with the voice")
    add_dirs(rb, out=False)

    dv = sub.add_parser(
        "design-voice",
        help="describe a voice; VoiceDesign speaks a reference, Base clones it",
        formatter_class=HelpFormatter,
    )
    add_voice_name(dv, "name of the new voice (lower-case, digits, -)", required=True)
    desc = dv.add_mutually_exclusive_group(required=True)
    desc.add_argument("--instruct", help="the voice, in words")
    desc.add_argument("--instruct-style", metavar="NAME", help="the voice, as a preset (see list-styles)")
    dv.add_argument(
        "--ref-text", required=True, help="what the designed voice says in its reference (1-3 sentences)"
    )
    dv.add_argument("--language", default="auto", help="language of --ref-text")
    dv.add_argument(
        "--design-model",
        default=DEFAULT_MODELS["voice_design"],
        metavar="ID_OR_DIR",
        help="VoiceDesign model that speaks the reference",
    )
    dv.add_argument(
        "--clone-model",
        default=DEFAULT_MODELS["base"],
        metavar="ID_OR_DIR",
        help="Base model that clones it (the voice then speaks with this model)",
    )
    dv.add_argument("--description", default="", help="free text stored with the voice")
    dv.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    add_generation(dv)
    add_runtime(dv, "unused: see --design-model and --clone-model")
    add_dirs(dv, out=False)

    rn = sub.add_parser("rename-voice", help="rename a registered voice", formatter_class=HelpFormatter)
    rn.add_argument("old", help="the voice's name now")
    rn.add_argument("new", help="its new name")
    rn.add_argument("--force", action="store_true", help="replace an existing voice of the new name")
    add_dirs(rn, out=False)

    dl = sub.add_parser("delete-voice", help="delete a registered voice", formatter_class=HelpFormatter)
    dl.add_argument("slug", metavar="VOICE", help="the voice to delete")
    dl.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    add_dirs(dl, out=False)

    ex = sub.add_parser("export-voice", help="write a voice to a zip file", formatter_class=HelpFormatter)
    ex.add_argument("slug", metavar="VOICE", help="the voice to export")
    ex.add_argument("--dest", metavar="FILE", help="zip path (default: <out>/exports/<slug>.zip)")
    ex.add_argument("--force", action="store_true", help="overwrite --dest if it exists")
    add_dirs(ex)

    im = sub.add_parser(
        "import-voice", help="add a voice from a zip made by export-voice", formatter_class=HelpFormatter
    )
    im.add_argument("zip", metavar="ZIP", help="a zip written by export-voice")
    im.add_argument("--as", dest="as_slug", metavar="SLUG", help="register under another name")
    im.add_argument("--force", action="store_true", help="replace an existing voice of that name")
    add_dirs(im, out=False)

    add_batch_command(sub)
    return parser


def add_take_checks(speak) -> None:
    """--select-best / --qa / --align-words (audiobox.takes)."""
    group = speak.add_argument_group("take checks")
    group.add_argument(
        "--select-best",
        action="store_true",
        help="check every take (words, voice, acoustics, pace) and write the best one as best.<format>; "
        "a take failing a hard check is never picked",
    )
    group.add_argument(
        "--qa", action="store_true", help="check the takes and print/save the scoreboard, pick nothing"
    )
    group.add_argument(
        "--align-words",
        action="store_true",
        help="write word timestamps of the chosen take (best, or take 1) to <take>.words.json",
    )
    group.add_argument(
        "--qa-asr",
        default="auto",
        choices=ASR_CHOICES,
        help="ASR for the checks: auto = faster-whisper, or PocketSphinx for English when the "
        "Whisper model is not available offline",
    )
    group.add_argument("--asr-model", metavar="NAME_OR_DIR", help="faster-whisper model for the checks")


def add_batch_command(sub) -> None:
    """`batch FILE` (audiobox.batch)."""
    add_batch_parser(sub)


# -- commands ------------------------------------------------------------------------------------


def cmd_speak(args) -> int:
    from audiobox.speak import SpeakRequest, run_speak
    from audiobox.tts.pool import ModelPool

    dirs = resolve_dirs(args.cache, args.out)
    check_named_output(args)
    text = read_text_arg(args.text, args.text_file)
    request = SpeakRequest(
        text=text,
        voice=args.voice,
        speaker=args.speaker,
        instruct=args.instruct,
        instruct_style=args.instruct_style,
        tone=args.tone,
        language=args.language,
        chunk=args.chunk,
        pause_s=args.pause,
        model=args.model,
        **generation_fields(args),
        out_exact=Path(args.out_exact) if args.out_exact else None,
    )
    if args.save_profile_default and not args.voice:
        raise UserError("--save-profile-default needs --voice")
    console = stderr_console()
    with ProgressView(console) as progress:
        pool = ModelPool(runtime_options(args), args.backend, progress)
        if args.stream or args.stdout:
            return cmd_speak_stream(args, request, dirs, pool, console, progress)
        result = run_speak(request, dirs, pool, progress=progress)
    if args.save_profile_default:
        save_profile_default(dirs, args)
    code = review_takes(args, result, dirs, console)
    summary = result.to_dict()
    if args.output and (chosen := chosen_take(result, args)) is not None:
        from audiobox.outputs import copy_to_named_output

        summary["output"] = str(copy_to_named_output(chosen, Path(args.output)))
    if args.json_result:
        from audiobox.fsutil import atomic_write_json

        atomic_write_json(Path(args.json_result), summary)
    if args.json:
        print_json(summary)
    else:
        print_takes(console, result, summary.get("output"))
    return code


def cmd_speak_stream(args, request, dirs, pool, console, progress) -> int:
    """speak --stream / --stdout: one take, written as it is made; time to first audio in --json."""
    from audiobox.speak_stream import StreamOutput, run_speak_stream

    if review_options(args).wanted:
        raise UserError(
            "take checks (--select-best/--qa/--align-words) need whole takes: drop --stream/--stdout"
        )
    if args.save_profile_default:
        save_profile_default(dirs, args)
    output = StreamOutput(fmt=args.stdout or args.format, pipe=sys.stdout.buffer if args.stdout else None)
    result = run_speak_stream(request, dirs, pool, output, progress=progress)
    progress.close()
    timings = {k: round(v, 3) for k, v in result.meta["timings"].items()}
    summary = result.to_dict() if result.run_dir else {"seed": result.meta["seed"], "timings": timings}
    if args.output and result.files:
        from audiobox.outputs import copy_to_named_output

        summary["output"] = str(copy_to_named_output(result.files[0], Path(args.output)))
    if args.json_result:
        from audiobox.fsutil import atomic_write_json

        atomic_write_json(Path(args.json_result), summary)
    if args.json:
        print_json(summary, file=sys.stderr if args.stdout else sys.stdout)
    elif result.run_dir:
        console.print(
            f"take 1: {result.files[0]}  {result.takes[0].duration:.2f} s audio, "
            f"first audio after {timings['first_audio_sec']:.2f} s"
        )
        console.print(f"metadata: {result.meta_path}")
        console.print(
            f"seed: {summary['seed']}" + (f"; output: {summary['output']}" if summary.get("output") else "")
        )
    else:
        console.print(
            f"streamed {result.takes[0].duration:.2f} s of audio, first after {timings['first_audio_sec']:.2f} s; "
            f"seed: {summary['seed']}"
        )
    return 0


def check_named_output(args) -> None:
    """-o FILE: a known extension, one take to write, no clash with --format; before any model loads."""
    if not args.output:
        return
    from audiobox.outputs import named_output_format

    if args.stdout:
        raise UserError("-o writes a file and --stdout writes to standard output: use one of them")
    fmt = named_output_format(Path(args.output))
    if args.format not in ("wav", fmt):
        raise UserError(f"-o {args.output} is a .{fmt} file but --format is {args.format}: drop one of them")
    if args.variants > 1 and not args.select_best:
        raise UserError("-o writes one file: with --variants add --select-best (or leave -o out)")
    args.format = fmt


def chosen_take(result, args) -> Path | None:
    """The take -o copies: the best with --select-best (None if none passed), else the only take."""
    selection = result.meta.get("selection") or {}
    if args.select_best:
        return result.run_dir / selection["best_file"] if selection.get("best_file") else None
    return result.files[0]


def review_takes(args, result, dirs, console) -> int:
    """--select-best / --qa / --align-words: judge the takes (audiobox.takes); 1 if none passed."""
    from audiobox.takes import review_speak_result

    options = review_options(args)
    if not options.wanted:
        return 0
    with ProgressView(console) as progress:
        review = review_speak_result(result, dirs, options, progress)
    print_review(console, review, result.run_dir)
    return 1 if review.failed else 0


def review_options(args):
    from audiobox.takes import ReviewOptions

    return ReviewOptions(
        select_best=args.select_best,
        qa=args.qa,
        align_words=args.align_words,
        asr=args.qa_asr,
        asr_model=args.asr_model,
        format=args.format,
    )


def print_review(console, review, run_dir: Path) -> None:
    board = review.board
    if review.failed:
        console.print("[red]no take passed the checks[/red]: best file not written (see the scoreboard)")
    console.print(
        scoreboard_table(
            board,
            title=f"takes ({board.metric.upper()} by {board.models.get('asr') or 'no ASR'}, "
            f"similarity to {board.models.get('similarity_to') or '-'})",
        )
    )
    if review.best_file is not None:
        console.print(f"best: take {board.best_index} -> {run_dir / review.best_file.name}")


def save_profile_default(dirs, args) -> None:
    from audiobox.voices import VoiceRegistry

    knobs = {k: v for k, v in explicit_knobs(args).items() if v is not None}
    if args.profile:
        knobs["profile"] = args.profile
    VoiceRegistry(dirs.voices).save_generation_defaults(args.voice, knobs)


def cmd_list_voices(args) -> int:
    from audiobox.voices import VoiceRegistry

    dirs = resolve_dirs(args.cache)
    voices, problems = VoiceRegistry(dirs.voices).list()
    if args.json:
        print_json(
            {
                "registry": str(dirs.voices),
                "count": len(voices),
                "voices": [v.summary() for v in voices],
                "problems": problems,
            }
        )
        return 0
    for line in problems:
        print(f"warning: {line}", file=sys.stderr)
    if not voices:
        print(
            f"no voices in {dirs.voices} (create one with voice-register, voice-clone synth --voice-name, "
            f"register-builtin or design-voice)"
        )
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("voice", "engine", "status", "language", "details", title=f"voices in {dirs.voices}")
    for voice in voices:
        s = voice.summary()
        details = (
            f"speaker {s['speaker']}"
            if s["speaker"]
            else f"{s['ref_duration_sec'] or 0:.1f} s ref; prompts: {', '.join(s['prompt_models']) or '-'}"
        )
        if s["tones"]:
            details += f"; tones: {', '.join(s['tones'])}"
        status = "ready" if s["ready"] else "no prompt (run voice-clone synth)"
        table.add_row(voice.slug, voice.engine, status, s["language"] or "auto", details)
    Console().print(table)
    return 0


def cmd_list_speakers(args) -> int:
    from audiobox.tts.models import read_model_info, require_type

    resolve_dirs(args.cache)
    info = read_model_info(args.model)
    require_type(info, "custom_voice", "listing built-in speakers")
    speakers = [{"name": s, "dialect": info.dialect_speakers.get(s)} for s in info.speakers]
    if args.json:
        print_json(
            {
                "model": info.ref,
                "source": "config.json" if info.path else "published",
                "count": len(speakers),
                "speakers": speakers,
                "languages": info.languages,
            }
        )
    else:
        for s in speakers:
            print(s["name"] + (f"  ({s['dialect']})" if s["dialect"] else ""))
    return 0


def cmd_list_styles(args) -> int:
    from audiobox.styles import load_styles

    styles = load_styles()
    if args.json:
        print_json({"count": len(styles), "styles": styles})
        return 0
    width = max(map(len, styles), default=0)
    for name, instruct in sorted(styles.items()):
        print(f"{name:<{width}}  {instruct}")
    return 0


def cmd_capabilities(args) -> int:
    from audiobox.capabilities import collect

    dirs = resolve_dirs(args.cache)
    report = collect(dirs, probe=args.probe)
    if args.json:
        print_json(report)
    else:
        for section, values in report.items():
            print(f"{section}:")
            for key, value in values.items() if isinstance(values, dict) else [("", values)]:
                print(f"  {key}: {value}")
    return 0


def cmd_register_builtin(args) -> int:
    from audiobox.builtin_voice import BuiltinRequest, register_builtin

    request = BuiltinRequest(
        voice_name=args.voice_name,
        speaker=args.speaker,
        model=args.model,
        instruct_default=args.instruct_default,
        instruct_default_style=args.instruct_default_style,
        language_default=args.language_default,
        tone=args.tone,
        tone_instruct=args.tone_instruct,
        tone_instruct_style=args.tone_instruct_style,
        display_name=args.display_name,
        description=args.description,
        replace=args.force,
    )
    result = register_builtin(request, resolve_dirs(args.cache))
    slug = result.voice.slug
    print(f"registered {slug}: speaker {result.speaker}" + (f", tone {args.tone}" if args.tone else ""))
    print(f'next: {app_command("voice-synth")} speak --voice {slug} --text "Hello"')
    return 0


def cmd_design_voice(args) -> int:
    from audiobox.design import DesignRequest, design_voice
    from audiobox.tts.pool import ModelPool

    dirs = resolve_dirs(args.cache)
    console = stderr_console()
    request = DesignRequest(
        slug=args.voice_name,
        instruct=args.instruct,
        instruct_style=args.instruct_style,
        ref_text=args.ref_text,
        language=args.language,
        design_model=args.design_model,
        clone_model=args.clone_model,
        **sampling_fields(args),
        display_name=args.display_name,
        description=args.description,
        replace=args.force,
    )
    with ProgressView(console) as progress:
        pool = ModelPool(runtime_options(args), args.backend, progress)
        result = design_voice(request, dirs, pool, progress)
    if args.json:
        print_json(result)
    else:
        console.print(
            f"registered {result['voice']} (designed reference: {result['reference']}, "
            f"{result['duration_sec']:.2f} s, seed {result['seed']})"
        )
        console.print(f'next: {app_command("voice-synth")} speak --voice {result["voice"]} --text "Hello"')
    return 0


def cmd_rename(args) -> int:
    from audiobox.voices import VoiceRegistry

    voice = VoiceRegistry(resolve_dirs(args.cache).voices).rename(args.old, args.new, replace=args.force)
    print(f"renamed {args.old} -> {voice.slug}")
    return 0


def cmd_delete(args) -> int:
    from audiobox.voices import VoiceRegistry

    registry = VoiceRegistry(resolve_dirs(args.cache).voices)
    registry.get(args.slug)
    if not args.yes:
        if not sys.stdin.isatty():
            raise UserError("refusing to delete without confirmation: pass --yes")
        if input(f"delete voice {args.slug!r}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("kept")
            return 1
    registry.delete(args.slug)
    print(f"deleted {args.slug}")
    return 0


def cmd_export(args) -> int:
    from audiobox.voices import VoiceRegistry

    dirs = resolve_dirs(args.cache, args.out)
    dest = Path(args.dest) if args.dest else dirs.work / "exports" / f"{args.slug}.zip"
    path = VoiceRegistry(dirs.voices).export_zip(args.slug, dest, force=args.force)
    print(path)
    return 0


def cmd_import(args) -> int:
    from audiobox.voices import VoiceRegistry

    voice = VoiceRegistry(resolve_dirs(args.cache).voices).import_zip(
        Path(args.zip), args.as_slug, args.force
    )
    print(f"imported {voice.slug} ({voice.engine})")
    return 0


COMMANDS = {
    "speak": cmd_speak,
    "list-voices": cmd_list_voices,
    "list-speakers": cmd_list_speakers,
    "list-styles": cmd_list_styles,
    "capabilities": cmd_capabilities,
    "register-builtin": cmd_register_builtin,
    "design-voice": cmd_design_voice,
    "rename-voice": cmd_rename,
    "delete-voice": cmd_delete,
    "export-voice": cmd_export,
    "import-voice": cmd_import,
    "batch": cmd_batch,
}


def main(argv=None) -> int:
    return run_main(lambda args: run_subcommand(build_parser, COMMANDS, args), argv)


if __name__ == "__main__":
    raise SystemExit(main())
