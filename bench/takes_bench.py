"""Batching pays: N takes in one batched call vs N calls, and a 20-item script in one process vs 20 runs.

Two comparisons on the same model, text and frame budget:

A. ``Synthesizer.speak(text, variants=N)`` (one batched generate call) against N calls of
   ``speak(text, variants=1)`` in the same process (model already loaded, so only generation counts).
B. ``voice-synth batch script.jsonl`` with ITEMS lines (one process, model loaded once, items batched)
   against ITEMS separate ``voice-synth speak`` processes (each imports torch and loads the model).

    # CPU smoke run on the tiny test checkpoint (built into a temp dir):
    python bench/takes_bench.py --tiny
    # a real or full-size checkpoint (bench/make_fullsize_qwen.py builds random full-size ones):
    python bench/takes_bench.py --model /models/Qwen3-TTS-12Hz-0.6B-CustomVoice --device cuda --variants 8

Random-weight checkpoints never emit their end token, so every take runs to --max-new-tokens frames
(80 ms each) and both sides produce the same amount of audio. Not run by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
APP = ROOT / "apps" / "voice-synth" / "voice-synth.py"
TEXT = "The quick brown fox jumps over the lazy dog, and then it runs far away."


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a CustomVoice checkpoint dir or hub id")
    src.add_argument("--tiny", action="store_true", help="build the tiny test checkpoint in a temp dir")
    p.add_argument("--speaker", default="ryan")
    p.add_argument("--text", default=TEXT)
    p.add_argument("--variants", type=int, default=4, help="N for comparison A")
    p.add_argument("--items", type=int, default=20, help="script length for comparison B")
    p.add_argument("--batch-size", type=int, default=8, help="items per batched call in comparison B")
    p.add_argument("--max-new-tokens", type=int, default=24, help="frames per take (80 ms each)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--skip", choices=("a", "b"), help="skip one comparison")
    return p.parse_args(argv)


def bench_variants(model: str, args) -> dict:
    from audiobox.tts.pool import ModelPool
    from audiobox.tts.runtime import RuntimeOptions
    from audiobox.tts.settings import resolve_settings
    from audiobox.tts.synth import VoiceSpec

    synth = ModelPool(RuntimeOptions(device=args.device, dtype=args.dtype)).synthesizer(model, "custom_voice")
    settings, _ = resolve_settings("balanced", max_new_tokens=args.max_new_tokens)
    spec = VoiceSpec.builtin(args.speaker)
    synth.speak(args.text, spec, "english", settings, 1, seed=0)  # warm-up (kernels, caches)
    started = time.perf_counter()
    batched = synth.speak(args.text, spec, "english", settings, args.variants, seed=1)
    batched_s = time.perf_counter() - started
    started = time.perf_counter()
    sequential = [
        synth.speak(args.text, spec, "english", settings, 1, seed=1 + i)[0] for i in range(args.variants)
    ]
    sequential_s = time.perf_counter() - started
    return {
        "n": args.variants,
        "batched_s": batched_s,
        "sequential_s": sequential_s,
        "batched_audio_s": sum(t.duration for t in batched),
        "sequential_audio_s": sum(t.duration for t in sequential),
        "backend": synth.backend_name,
    }


def bench_script(model: str, args, work: Path) -> dict:
    cache = work / "cache"
    texts = [f"Line {i + 1}: {args.text}" for i in range(args.items)]
    script = work / "script.jsonl"
    script.write_text(
        "".join(
            json.dumps({"speaker": args.speaker, "text": t, "language": "english", "model": model}) + "\n"
            for t in texts
        )
    )
    common = [
        "--cache",
        str(cache),
        "--max-new-tokens",
        str(args.max_new_tokens),
        "--device",
        args.device,
        "--dtype",
        args.dtype,
        "--seed",
        "1",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            str(APP),
            "batch",
            str(script),
            "--out-exact",
            str(work / "batch"),
            "--batch-size",
            str(args.batch_size),
            *common,
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    one_process_s = time.perf_counter() - started
    manifest = json.loads((work / "batch" / "manifest.json").read_text())
    batch_audio = sum(e.get("duration_sec") or 0 for e in manifest["items"])
    started = time.perf_counter()
    separate_audio = 0.0
    for i, text in enumerate(texts):
        out = subprocess.run(
            [
                sys.executable,
                str(APP),
                "speak",
                "--speaker",
                args.speaker,
                "--text",
                text,
                "--language",
                "english",
                "--model",
                model,
                "--out-exact",
                str(work / f"speak-{i:02d}"),
                "--json",
                *common,
            ],
            check=True,
            env=env,
            capture_output=True,
            text=True,
        ).stdout
        separate_audio += sum(t["duration_sec"] for t in json.loads(out)["takes"])
    separate_s = time.perf_counter() - started
    return {
        "items": args.items,
        "one_process_s": one_process_s,
        "separate_s": separate_s,
        "batch_audio_s": batch_audio,
        "separate_audio_s": separate_audio,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="takes-bench-") as tmp:
        work = Path(tmp)
        model = args.model
        if args.tiny:
            from make_tiny_models import build_tiny_models

            model = str(build_tiny_models(work / "models", only=["custom_voice"])["custom_voice"])
            if args.dtype == "auto":
                args.dtype = "float32"
        rows = []
        if args.skip != "a":
            a = bench_variants(model, args)
            rows.append(
                (
                    f"A: {a['n']} takes of one text ({a['backend']})",
                    "1 batched call",
                    a["batched_s"],
                    a["batched_audio_s"],
                    f"{a['n']} sequential calls",
                    a["sequential_s"],
                    a["sequential_audio_s"],
                )
            )
        if args.skip != "b":
            b = bench_script(model, args, work)
            rows.append(
                (
                    f"B: {b['items']}-item script",
                    "1 batch process",
                    b["one_process_s"],
                    b["batch_audio_s"],
                    f"{b['items']} speak processes",
                    b["separate_s"],
                    b["separate_audio_s"],
                )
            )
    print(
        f"model: {args.model or 'tiny test checkpoint'}  device: {args.device}  frames/take: {args.max_new_tokens}"
    )
    print(
        f"{'comparison':34} {'batched':>18} {'wall s':>8} {'audio s':>8}   {'one by one':>20} {'wall s':>8} "
        f"{'audio s':>8}   {'speed-up':>8}"
    )
    for name, left, left_s, left_audio, right, right_s, right_audio in rows:
        print(
            f"{name:34} {left:>18} {left_s:8.2f} {left_audio:8.2f}   {right:>20} {right_s:8.2f} {right_audio:8.2f}"
            f"   {right_s / left_s:7.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
