"""GPU speed of Qwen3-TTS: single-stream real-time factor, time to first audio, batched throughput.

Runs each engine on the same checkpoint, text and seed, for every model given:

* ``upstream``          qwen-tts ``Qwen3TTSModel.generate_custom_voice`` (HF generate, dynamic cache)
* ``fast``              audiobox's ``FastGenerator`` (static cache, no nested generate; identical output)
* ``faster-qwen3-tts``  the PyPI package (CUDA graphs, static cache), when importable and on CUDA

    # on a GPU box, random full-size weights (no download needed):
    python bench/gpu_bench.py --build /tmp/qwen-full --presets 0.6b,1.7b --device cuda
    # or real checkpoints:
    python bench/gpu_bench.py --model 0.6b=/models/Qwen3-TTS-12Hz-0.6B-CustomVoice --device cuda
    # CPU smoke run on the tiny test checkpoint:
    python bench/gpu_bench.py --model tiny=/tmp/tiny/custom_voice --device cpu --dtype float32 --frames 6 --reps 1 --batch 2

Speed figures: ``rtf`` = audio seconds / wall seconds (>1 is faster than real time, the convention
of faster-qwen3-tts), ``x`` = wall / audio (the project's CPU convention).  Time to first audio is
the whole call for engines that do not stream (audio arrives at the end); time to first frame is
when the first 80 ms frame of codes exists.  The frame count is forced (see bench/cpu_bench.py).
Prints one JSON line per model and engine; ``--json-out`` appends them to a file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(ROOT / "bench"))

TEXT = "The quick brown fox jumps over the lazy dog, and then it runs far away."
NEVER_EOS = 99999
SAMPLES_PER_FRAME = 1920


def _sync(torch, device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _attention(requested: str) -> str:
    if requested != "auto":
        return requested
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return "sdpa"
    return "flash_attention_2"


def bench_model(label: str, path: Path, args) -> list[dict]:
    with contextlib.redirect_stdout(sys.stderr):
        import torch
        import transformers
        from qwen_tts import Qwen3TTSModel
    transformers.logging.set_verbosity_error()
    from audiobox.tts.fastpath import FastGenerator

    device = args.device
    dtype = getattr(torch, args.dtype)
    attn = _attention(args.attn)
    engines = [e for e in args.engines.split(",") if e]
    results = []

    started = time.perf_counter()
    model = Qwen3TTSModel.from_pretrained(str(path), dtype=dtype, attn_implementation=attn, device_map=device)
    _sync(torch, device)
    load_s = time.perf_counter() - started
    speaker = model.get_supported_speakers()[0]
    gen = dict(max_new_tokens=args.frames + 1, eos_token_id=NEVER_EOS, language="english", speaker=speaker)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    runners = {}
    if "upstream" in engines:
        runners["upstream"] = (lambda text, on_frame=None: model.generate_custom_voice(text, **gen), True)  # noqa: F821 (bound above, deleted after use)
    if "fast" in engines:
        if FastGenerator.supports(model):
            fast = FastGenerator(model)
            runners["fast"] = (
                lambda text, on_frame=None: fast.generate_custom_voice(text, progress=on_frame, **gen),
                True,
            )
        else:
            results.append({"model": label, "engine": "fast", "skipped": f"unsupported with attn={attn}"})
    if "faster-qwen3-tts" in engines:
        reason = None
        if not device.startswith("cuda"):
            reason = "needs CUDA"
        else:
            try:
                from faster_qwen3_tts import FasterQwen3TTS
            except ImportError:
                reason = "not installed (pip install -e '.[gpu-bench]')"
        if reason:
            results.append({"model": label, "engine": "faster-qwen3-tts", "skipped": reason})
        else:
            other = FasterQwen3TTS.from_pretrained(
                str(path), device=device, dtype=dtype, attn_implementation="sdpa"
            )
            # No batch API and its own stopping rules: single stream only, frames as produced.
            runners["faster-qwen3-tts"] = (
                lambda text, on_frame=None: other.generate_custom_voice(
                    text=text, speaker=speaker, language="english", max_new_tokens=args.frames + 1
                ),
                False,
            )

    for engine, (run, batches) in runners.items():
        torch.manual_seed(0)
        run(TEXT)  # warm-up: kernel selection, graph capture, allocator growth
        _sync(torch, device)
        walls, audios, firsts = [], [], []
        for rep in range(args.reps):
            torch.manual_seed(rep)
            marks = []
            started = time.perf_counter()

            def on_frame(event, started=started, marks=marks):  # an audiobox.progress.ProgressEvent
                if event.done == 1:
                    _sync(torch, device)
                    marks.append(time.perf_counter() - started)

            wavs, sr = run(TEXT, on_frame)
            _sync(torch, device)
            walls.append(time.perf_counter() - started)
            audios.append(len(wavs[0]) / sr)
            if marks:
                firsts.append(marks[0])
        wall, audio = statistics.median(walls), statistics.median(audios)
        row = {
            "model": label,
            "engine": engine,
            "device": device,
            "dtype": args.dtype,
            "attn": attn,
            "frames": args.frames,
            "runs_s": walls,
            "audio_s": audio,
            "rtf": audio / wall,
            "x": wall / audio,
            "time_to_first_audio_s": wall,
            "time_to_first_frame_s": statistics.median(firsts) if firsts else None,
            "load_s": load_s,
        }
        if batches and args.batch > 1:
            torch.manual_seed(0)
            started = time.perf_counter()
            wavs, sr = run([TEXT] * args.batch)
            _sync(torch, device)
            batch_wall = time.perf_counter() - started
            batch_audio = sum(len(w) for w in wavs) / sr
            row.update(
                batch=args.batch,
                batch_wall_s=batch_wall,
                batch_audio_s=batch_audio,
                batch_throughput_rtf=batch_audio / batch_wall,
            )
        if device.startswith("cuda"):
            row["peak_gpu_mem_gb"] = torch.cuda.max_memory_allocated() / 1e9
            row["gpu"] = torch.cuda.get_device_name(0)
        results.append(row)
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", action="append", default=[], help="LABEL=DIR of a CustomVoice checkpoint (repeatable)"
    )
    parser.add_argument(
        "--build", type=Path, default=None, help="build full-size random-weight dirs here first"
    )
    parser.add_argument("--presets", default="0.6b,1.7b", help="with --build: which sizes")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--attn", default="auto", help="auto = flash_attention_2 if installed, else sdpa")
    parser.add_argument("--engines", default="upstream,fast,faster-qwen3-tts")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    models = []
    for item in args.model:
        label, _, path = item.partition("=")
        models.append((label, Path(path)))
    if args.build:
        import make_fullsize_qwen

        for preset in [p for p in args.presets.split(",") if p]:
            target = args.build / preset
            if not (target / "custom_voice" / "model.safetensors").exists():
                make_fullsize_qwen.build(target, preset, ["custom_voice"])
            models.append((preset, target / "custom_voice"))
    if not models:
        parser.error("give --model LABEL=DIR or --build DIR")

    for label, path in models:
        for row in bench_model(label, path, args):
            line = json.dumps(row)
            print(line, flush=True)
            if args.json_out:
                with args.json_out.open("a", encoding="utf-8") as handle:
                    handle.write(line + "\n")
            if "skipped" in row:
                print(f"{label:6s} {row['engine']:17s} skipped: {row['skipped']}", file=sys.stderr)
            else:
                batch = (
                    f", batch {row['batch']}: {row['batch_throughput_rtf']:.2f} rtf" if "batch" in row else ""
                )
                first = row["time_to_first_frame_s"]
                print(
                    f"{label:6s} {row['engine']:17s} rtf {row['rtf']:.2f} ({row['x']:.2f}x), first audio "
                    f"{row['time_to_first_audio_s']:.2f}s, first frame "
                    f"{first if first is None else round(first, 3)}s{batch}",
                    file=sys.stderr,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
