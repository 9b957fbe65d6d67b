"""`voice-synth batch FILE`: the arguments, the command, and its progress line (audiobox.batch does the work)."""

from __future__ import annotations

import argparse
from pathlib import Path

from audiobox.batch import DEFAULT_BATCH_SIZE, DIALOGUE_PAUSE_S, BatchOptions, BatchResult
from audiobox.cli.common import (
    HelpFormatter,
    ProgressView,
    add_dirs,
    add_generation,
    add_output_format,
    add_runtime,
    generation_fields,
    positive_int,
    print_json,
    runtime_options,
    stderr_console,
)
from audiobox.cli.timeflags import time_value
from audiobox.errors import UserError

MAX_OUTPUTS_LISTED = 20  # after a run, one line per item (file + seed) up to this many; the rest: manifest

BATCH_EPILOG = """script formats:
  YAML   - a list of items, or {defaults: {...}, items: [...]}
           - {voice: narrator, text: "Chapter one.", output: ch1}
           - {speaker: ryan, text: "Hi!", variants: 3, language: english, profile: stable}
  JSONL  - one item per line: {"voice": "narrator", "text": "Hello", "tone": "calm"}
  .txt   - a dialogue rendered into one file: "[alice] Hi Bob." / "[bob:whisper] Hi." / "[speaker=ryan] Hey."
item fields: voice | speaker, text, tone, language, profile, variants, output, instruct, seed, model
re-running the same command skips items already done (manifest.json in the output dir)."""


def add_batch_parser(sub) -> argparse.ArgumentParser:
    """The `batch` subcommand of voice-synth."""
    parser = sub.add_parser(
        "batch",
        help="render a YAML/JSONL script or a [voice]-tagged dialogue in one process",
        formatter_class=HelpFormatter,
        epilog=BATCH_EPILOG,
    )
    parser.add_argument("script", metavar="FILE", help="script: .yaml/.yml, .jsonl or .txt (dialogue)")
    parser.add_argument(
        "--out-exact",
        metavar="DIR",
        help="output dir (default: <out>/batch/<script name>-<suffix>/, e.g. batch/intro-yaml/)",
    )
    parser.add_argument("--variants", type=positive_int, help="takes per item unless the item says otherwise")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH_SIZE,
        help="items generated together in one model call (1 = one call per item)",
    )
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failing item")
    parser.add_argument(
        "--check", action="store_true", help="validate the script against voices and models, generate nothing"
    )
    parser.add_argument(
        "--pause",
        type=time_value,
        default=DIALOGUE_PAUSE_S,
        metavar="SEC",
        help="silence between dialogue lines (seconds or m:ss)",
    )
    parser.add_argument(
        "--select-best",
        action="store_true",
        help="items with several variants: keep the best as <output>.<format>",
    )
    parser.add_argument(
        "--qa", action="store_true", help="check every take and record the scoreboard in the manifest"
    )
    parser.add_argument(
        "--qa-asr",
        default="auto",
        choices=("auto", "whisper", "sphinx", "none"),
        help="ASR for the checks (see speak --help)",
    )
    parser.add_argument("--asr-model", metavar="NAME_OR_DIR", help="faster-whisper model for the checks")
    parser.add_argument(
        "--shard",
        metavar="I/K",
        help="render only shard I of K (1-based; items of a voice kept together, shards balanced by "
        "text length) into manifest.shard-I-of-K.json; 'auto' or 'auto/K' takes I from a Kubernetes "
        "Indexed Job (JOB_COMPLETION_INDEX) or a Slurm array (SLURM_ARRAY_TASK_ID)",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="check that every shard in the output dir is complete and write the one manifest.json",
    )
    parser.add_argument("--json", action="store_true", help="print the result summary as JSON on stdout")
    add_output_format(parser)
    add_generation(parser)
    add_runtime(
        parser,
        "model for the items whose voice needs that kind of model (Base or CustomVoice); "
        "an item's own 'model' wins (default: each voice's own model)",
    )
    add_dirs(parser)
    return parser


def cmd_batch(args) -> int:
    from audiobox.batch import parse_script, plan_script, run_batch
    from audiobox.paths import resolve_dirs
    from audiobox.shard import merge, parse_shard
    from audiobox.tts.pool import ModelPool
    from audiobox.voices import VoiceRegistry

    dirs = resolve_dirs(args.cache, args.out)
    script = parse_script(args.script)
    if args.merge:
        if args.shard:
            raise UserError("--merge and --shard: merge after the shards have run")
        merged = merge(Path(args.out_exact) if args.out_exact else dirs.work / "batch" / script.folder_name)
        print(
            f"merged {merged.shards} shards: {merged.done}/{merged.items} items done; manifest: {merged.manifest_path}"
        )
        if args.json:
            print_json(
                {"manifest": str(merged.manifest_path), "shards": merged.shards, "items": merged.items}
            )
        return 0
    options = BatchOptions(
        out_dir=Path(args.out_exact) if args.out_exact else None,
        model=args.model,
        **generation_fields(args),
        batch_size=args.batch_size,
        select_best=args.select_best,
        qa=args.qa,
        judge_asr=args.qa_asr,
        judge_asr_model=args.asr_model,
        fail_fast=args.fail_fast,
        pause_s=args.pause,
        shard=parse_shard(args.shard) if args.shard else None,
    )
    console = stderr_console()
    registry = VoiceRegistry(dirs.voices)
    if args.check:
        planned = plan_script(script, registry, options)
        models = sorted({p.model_ref for p in planned})
        console.print(
            f"{script.path.name}: {len(planned)} items OK ({script.kind}); models: {', '.join(models)}"
        )
        return 0
    with ProgressView(console) as progress:
        pool = ModelPool(runtime_options(args), args.backend, progress)
        result = run_batch(script, dirs, pool, options, progress=progress, registry=registry)
    for line in result.failures:
        console.print(f"[red]failed[/red] {line}")
    for out in result.outputs[:MAX_OUTPUTS_LISTED]:
        console.print(f"item {out['item']}: {', '.join(out['files'])} (seed {out['seed']})")
    if len(result.outputs) > MAX_OUTPUTS_LISTED:
        console.print(
            f"... {len(result.outputs) - MAX_OUTPUTS_LISTED} more items: files and seeds in the manifest"
        )
    if result.dialogue_file:
        console.print(f"dialogue: {result.dialogue_file}")
    console.print(summary_line(result))
    if args.json:
        print_json(
            {
                "out_dir": str(result.out_dir),
                "manifest": str(result.manifest_path),
                "done": result.done,
                "failed": result.failed,
                "reused": result.reused,
                "audio_sec": round(result.audio_sec, 3),
                "synth_sec": round(result.synth_sec, 3),
                "dialogue": str(result.dialogue_file) if result.dialogue_file else None,
                "failures": result.failures,
                "outputs": result.outputs,
            }
        )
    return 0 if result.ok else 1


def summary_line(result: BatchResult) -> str:
    rtf = f", RTF {result.synth_sec / result.audio_sec:.2f}" if result.audio_sec else ""
    return (
        f"{result.done} done ({result.reused} reused), {result.failed} failed; "
        f"{result.audio_sec:.1f} s of audio{rtf}; manifest: {result.manifest_path}"
    )
