"""Time upstream qwen-tts against audiobox's fast path on one checkpoint, and the bandwidth floor.

One process per condition (model dir x precision x threads): it loads the model once, then
alternates upstream and fast-path runs with the same text and seed (so drift hits both), forcing a
fixed frame count.  It prints one JSON line per condition and a readable summary.

    python bench/cpu_bench.py MODEL_DIR --dtype bfloat16 --frames 25 --reps 3 [--threads N]
        [--quant int8] [--batch 4] [--engines upstream,fast,packed] [--json-out results.jsonl]

Engines: ``upstream`` is qwen-tts's own generate; ``fast`` is audiobox's decode loop on the same
model; ``packed`` is that loop on a second copy of the model whose bf16 Linear weights were packed
for oneDNN (``audiobox.tts.weights.pack_bf16``), which is what ``voice-synth`` runs on a CPU in bf16.

Fixed length: qwen-tts hard-codes min_new_tokens=2 and forwards no other stopping options, but it
passes ``eos_token_id`` through; an id outside the vocabulary can never be produced, so generation
runs to ``max_new_tokens`` (N+1 tokens give N frames).  Each run records the frames it produced.

Floor: bytes of weights one frame must read (a talker step, 15 code-predictor sub-steps with one
of their 15 heads each, and the codec decoder's weights spread over the frames of the call),
divided by the read bandwidth measured here with the same thread count.  It is a lower bound for
memory-bound decoding; the codec decoder is mostly compute-bound, so the floor flatters it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

TEXT = "The quick brown fox jumps over the lazy dog, and then it runs far away."
SAMPLES_PER_FRAME = 1920
SAMPLE_RATE = 24000
NEVER_EOS = 99999


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # ru_maxrss is KiB on Linux


def measure_read_bandwidth(torch, trials: int = 7, gib: float = 0.5) -> float:
    """Best read bandwidth (bytes/s) of summing a large float32 tensor with the current threads."""
    data = torch.ones(int(gib * (1 << 30)) // 4, dtype=torch.float32)
    data.sum()
    best = 0.0
    for _ in range(trials):
        started = time.perf_counter()
        data.sum()
        best = max(best, data.numel() * 4 / (time.perf_counter() - started))
    del data
    return best


def module_weight_bytes(module) -> int:
    """Bytes of weights a forward pass of ``module`` reads (packed and int8 Linear layers as stored)."""
    total = 0
    for sub in module.modules():
        if hasattr(sub, "weight_nbytes"):  # audiobox.tts.weights layers: the weight is opaque
            total += sub.weight_nbytes()
            if getattr(sub, "bias", None) is not None:
                total += sub.bias.numel() * sub.bias.element_size()
            continue
        for param in sub.parameters(recurse=False):
            total += param.numel() * param.element_size()
        for buffer in sub.buffers(recurse=False):
            if buffer.dtype.is_floating_point and buffer.numel() > 1024:
                total += buffer.numel() * buffer.element_size()
    return total


def bytes_per_frame(model, frames: int) -> dict:
    talker = model.model.talker
    predictor = talker.code_predictor
    sub_steps = predictor.config.num_code_groups - 1
    talker_bytes = sum(module_weight_bytes(layer) for layer in talker.model.layers)
    talker_bytes += module_weight_bytes(talker.model.norm) + module_weight_bytes(talker.codec_head)
    predictor_step = sum(module_weight_bytes(layer) for layer in predictor.model.layers)
    predictor_step += module_weight_bytes(predictor.model.norm) + module_weight_bytes(
        predictor.small_to_mtp_projection
    )
    heads = sum(module_weight_bytes(head) for head in predictor.lm_head)  # each head read once per frame
    predictor_bytes = sub_steps * predictor_step + heads
    codec = model.model.speech_tokenizer.model.decoder
    codec_bytes = module_weight_bytes(codec) / max(frames, 1)
    return {
        "talker": talker_bytes,
        "code_predictor": predictor_bytes,
        "codec_per_frame": codec_bytes,
        "total": talker_bytes + predictor_bytes + codec_bytes,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--quant", default="none", choices=["none", "int8"])
    parser.add_argument("--threads", type=int, default=0, help="0 = audiobox.tts.cpu.recommended_threads")
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--batch", type=int, default=0, help="also time a batch of N texts vs N sequential calls"
    )
    parser.add_argument(
        "--engines",
        default=None,
        help="comma list (default: upstream,fast and, for --dtype bfloat16, packed)",
    )
    parser.add_argument("--speaker", default=None, help="CustomVoice speaker (default: first supported)")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import_started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        import torch
        import transformers
        from qwen_tts import Qwen3TTSModel
    transformers.logging.set_verbosity_error()
    from audiobox.tts.cpu import recommended_threads
    from audiobox.tts.fastpath import FastGenerator
    from audiobox.tts.runtime import checkpoint_load_dtype
    from audiobox.tts.weights import pack_bf16, quantize_int8

    import_s = time.perf_counter() - import_started
    threads = args.threads or recommended_threads("float32" if args.quant == "int8" else args.dtype)
    if args.quant == "int8":
        threads = args.threads or recommended_threads("int8")
    torch.set_num_threads(threads)

    load_dtype = getattr(torch, checkpoint_load_dtype("int8") if args.quant == "int8" else args.dtype)
    started = time.perf_counter()
    model = Qwen3TTSModel.from_pretrained(str(args.model_dir), dtype=load_dtype, attn_implementation="sdpa")
    load_s = time.perf_counter() - started
    quant_s = 0.0
    if args.quant == "int8":
        started = time.perf_counter()
        quantize_int8(model)
        quant_s = time.perf_counter() - started
    weights = bytes_per_frame(model, args.frames)
    default_engines = (
        "upstream,fast,packed" if args.dtype == "bfloat16" and args.quant == "none" else "upstream,fast"
    )
    engines = [e for e in (args.engines or default_engines).split(",") if e]
    packed_fast = None
    skipped: dict[str, str] = {}
    if "packed" in engines:
        if args.quant != "none" or args.dtype != "bfloat16":
            raise SystemExit(
                "the packed engine is bf16 only: pass --dtype bfloat16 or leave it out of --engines"
            )
        packed_model = Qwen3TTSModel.from_pretrained(
            str(args.model_dir), dtype=load_dtype, attn_implementation="sdpa"
        )
        if pack_bf16(packed_model):
            packed_fast = FastGenerator(packed_model)
        else:  # the engine audiobox would not use here either: report it skipped, time the rest
            engines.remove("packed")
            skipped["packed"] = "oneDNN's packed bf16 is not bit-identical on this CPU"
            del packed_model
    rss_after_load = peak_rss_gb()
    print(
        f"  loaded in {load_s:.1f} s (+quantize {quant_s:.1f} s), threads {threads}",
        file=sys.stderr,
        flush=True,
    )
    kind = model.model.config.tts_model_type
    if kind != "custom_voice":
        raise SystemExit("this bench drives generate_custom_voice; build the custom_voice kind")
    speaker = args.speaker or model.get_supported_speakers()[0]
    fast = FastGenerator(model)

    decode_seconds: list[float] = []

    def time_codec_decode(tokenizer) -> None:
        original_decode = tokenizer.decode

        def timed_decode(*a, **k):
            started = time.perf_counter()
            try:
                return original_decode(*a, **k)
            finally:
                decode_seconds.append(time.perf_counter() - started)

        tokenizer.decode = timed_decode

    for generator in filter(None, (fast, packed_fast)):
        time_codec_decode(generator.model.speech_tokenizer)

    gen = dict(max_new_tokens=args.frames + 1, eos_token_id=NEVER_EOS, language="english", speaker=speaker)

    def call(engine: str, text, first_frame: list | None = None):
        if engine == "upstream":
            return model.generate_custom_voice(text, **gen)
        generator = packed_fast if engine == "packed" else fast
        marks = first_frame if first_frame is not None else []
        started = time.perf_counter()

        def on_frame(event):  # an audiobox.progress.ProgressEvent per frame
            if event.done == 1:
                marks.append(time.perf_counter() - started)

        return generator.generate_custom_voice(text, progress=on_frame, **gen)

    for engine in engines:  # warm-up: first calls pay lazy imports and allocator growth
        torch.manual_seed(0)
        call(engine, TEXT)

    runs: dict[str, list[dict]] = {e: [] for e in engines}
    for rep in range(args.reps):
        for engine in engines:
            decode_seconds.clear()
            first: list[float] = []
            torch.manual_seed(rep)
            cpu0 = time.process_time()
            started = time.perf_counter()
            wavs, sr = call(engine, TEXT, first)
            wall = time.perf_counter() - started
            frames = len(wavs[0]) // SAMPLES_PER_FRAME
            runs[engine].append(
                {
                    "wall_s": wall,
                    "frames": frames,
                    "audio_s": len(wavs[0]) / sr,
                    "decode_s": sum(decode_seconds),
                    "cpu_s": time.process_time() - cpu0,
                    "first_frame_s": first[0] if first else None,
                }
            )
            print(
                f"  rep {rep} {engine}: {wall:.2f} s wall, {runs[engine][-1]['cpu_s']:.2f} s cpu, {frames} frames",
                file=sys.stderr,
                flush=True,
            )

    batch_results = {}
    if args.batch:
        texts = [TEXT] * args.batch
        for engine in engines:
            torch.manual_seed(0)
            started = time.perf_counter()
            wavs, sr = call(engine, texts)
            batched = time.perf_counter() - started
            audio = sum(len(w) for w in wavs) / sr
            started = time.perf_counter()
            seq_audio = 0.0
            for text in texts:
                w, sr = call(engine, text)
                seq_audio += len(w[0]) / sr
            sequential = time.perf_counter() - started
            print(
                f"  {engine} batch {args.batch}: {batched:.2f} s, sequential {sequential:.2f} s",
                file=sys.stderr,
                flush=True,
            )
            batch_results[engine] = {
                "batch": args.batch,
                "batched_s": batched,
                "batched_audio_s": audio,
                "sequential_s": sequential,
                "sequential_audio_s": seq_audio,
                "batched_x": batched / audio,
                "sequential_x": sequential / seq_audio,
            }

    peak_rss = peak_rss_gb()  # before the bandwidth probe allocates its buffer
    bandwidth = measure_read_bandwidth(torch)
    floor_s_per_frame = weights["total"] / bandwidth
    floor_x = floor_s_per_frame / (SAMPLES_PER_FRAME / SAMPLE_RATE)
    summary = {
        "model_dir": str(args.model_dir),
        "kind": kind,
        "tts_model_size": model.model.config.tts_model_size,
        "dtype": args.dtype
        if args.quant == "none"
        else f"int8-dynamic (fp32 activations, {checkpoint_load_dtype('int8')} codec)",
        "threads": threads,
        "frames": args.frames,
        "reps": args.reps,
        "import_s": import_s,
        "load_s": load_s,
        "quantize_s": quant_s,
        "rss_after_load_gb": rss_after_load,
        "peak_rss_gb": peak_rss,
        "read_bandwidth_gbs": bandwidth / 1e9,
        "weight_bytes_per_frame": weights,
        "floor_x": floor_x,
        "engines": {},
        "skipped": skipped,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "batch": batch_results,
    }
    for engine, items in runs.items():
        walls = [r["wall_s"] for r in items]
        audio = statistics.median(r["audio_s"] for r in items)
        median_wall = statistics.median(walls)
        firsts = [r["first_frame_s"] for r in items if r["first_frame_s"] is not None]
        summary["engines"][engine] = {
            "runs_s": walls,
            "median_s": median_wall,
            "audio_s": audio,
            "x": median_wall / audio,
            "x_of_floor": (median_wall / audio) / floor_x,
            "decode_share": statistics.median(r["decode_s"] / r["wall_s"] for r in items),
            "cpu_per_wall": statistics.median(r["cpu_s"] / r["wall_s"] for r in items),
            "cpu_runs_s": [r["cpu_s"] for r in items],
            "cpu_x": statistics.median(r["cpu_s"] for r in items) / audio,
            "frames": [r["frames"] for r in items],
            "time_to_first_audio_s": median_wall,  # neither engine streams: audio arrives at the end
            "time_to_first_frame_s": statistics.median(firsts) if firsts else None,
        }
    line = json.dumps(summary)
    print(line)
    if args.json_out:
        with args.json_out.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
    print(
        f"\n{summary['tts_model_size']} {summary['dtype']} threads={threads} frames={args.frames} "
        f"load {load_s:.1f}s (+quant {quant_s:.1f}s) peak RSS {summary['peak_rss_gb']:.2f} GB "
        f"bandwidth {bandwidth / 1e9:.1f} GB/s floor {floor_x:.2f}x "
        f"({weights['total'] / 1e9:.2f} GB/frame)",
        file=sys.stderr,
    )
    for engine, result in summary["engines"].items():
        print(
            f"  {engine:8s} runs {', '.join(f'{w:.2f}' for w in result['runs_s'])} s -> {result['x']:.2f}x "
            f"(cpu {result['cpu_x']:.2f}x) "
            f"({result['x_of_floor']:.2f}x floor), decode {result['decode_share']:.0%}, "
            f"frames {result['frames']}",
            file=sys.stderr,
        )
    for engine, reason in skipped.items():
        print(f"  {engine:8s} skipped: {reason}", file=sys.stderr)
    for engine, result in batch_results.items():
        print(
            f"  {engine:8s} batch {result['batch']}: {result['batched_x']:.2f}x vs sequential "
            f"{result['sequential_x']:.2f}x",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
