#!/usr/bin/env python3
"""End to end through `voice-synth speak`: the old toolbox's setting against ours, same model and text.

Each configuration runs as a fresh process (as a user runs it); the script prints the median of
`--runs` for synthesis RTF (wall / audio, from takes.meta.json) and whole-process wall time, and
each as a ratio to upstream float32.

    .venv/bin/python bench/make_fullsize_qwen.py OUT          # full-size random-weight checkpoints
    .venv/bin/python bench/speak_e2e.py --model OUT/0.6b/custom_voice [--runs 3] [--frames 25]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "upstream float32, 2 threads (old toolbox)": [
        "--backend",
        "upstream",
        "--dtype",
        "float32",
        "--tts-threads",
        "2",
    ],
    "upstream float32, 1 thread": ["--backend", "upstream", "--dtype", "float32", "--tts-threads", "1"],
    "ours, --dtype auto": [],
    "ours, --dtype int8": ["--dtype", "int8"],
}


def run_once(model: str, frames: int, seed: int, extra: list[str], env: dict) -> tuple[float, float]:
    cmd = [
        sys.executable,
        str(ROOT / "apps/voice-synth/voice-synth.py"),
        "speak",
        "--speaker",
        "ryan",
        "--text",
        "The quick brown fox jumps over the lazy dog.",
        "--model",
        model,
        "--max-new-tokens",
        str(frames + 1),
        "--seed",
        str(seed),
        "--json",
        *extra,
    ]
    started = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    wall = time.perf_counter() - started
    return json.loads(out)["timings"]["rtf"], wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", required=True, help="a CustomVoice checkpoint dir (full size for real numbers)"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--frames", type=int, default=25, help="frames per take (80 ms each)")
    args = parser.parse_args()
    scratch = tempfile.mkdtemp()
    env = dict(
        os.environ, AUDIOBOX_CACHE=f"{scratch}/cache", AUDIOBOX_WORK=f"{scratch}/work", HF_HUB_OFFLINE="1"
    )
    results = {name: [] for name in CONFIGS}
    for seed in range(args.runs):  # configurations interleaved, so drift hits all alike
        for name, extra in CONFIGS.items():
            results[name].append(run_once(args.model, args.frames, seed, extra, env))
    base_rtf = statistics.median(r for r, _ in results[next(iter(CONFIGS))])
    base_wall = statistics.median(w for _, w in results[next(iter(CONFIGS))])
    print(f"{'configuration':44} {'synth RTF':>10} {'speed-up':>9} {'process s':>10} {'speed-up':>9}")
    for name, rows in results.items():
        rtf = statistics.median(r for r, _ in rows)
        wall = statistics.median(w for _, w in rows)
        print(f"{name:44} {rtf:10.2f} {base_rtf / rtf:8.2f}x {wall:10.1f} {base_wall / wall:8.2f}x")


if __name__ == "__main__":
    main()
