#!/usr/bin/env python3
"""Wall time of the metadata commands next to `python -c "import qwen_tts"` (median of N runs).

.venv/bin/python bench/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "apps/voice-synth/voice-synth.py")


def median_wall(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    cache = tempfile.mkdtemp()
    reference = median_wall([sys.executable, "-c", "import qwen_tts"], args.runs)
    rows = [("python -c 'import qwen_tts'", reference)]
    for label, argv in [
        ("voice-synth --help", ["--help"]),
        ("list-voices", ["list-voices", "--cache", cache]),
        ("list-speakers", ["list-speakers", "--cache", cache]),
        ("capabilities", ["capabilities", "--cache", cache]),
    ]:
        rows.append((label, median_wall([sys.executable, APP, *argv], args.runs)))
    print(f"{'command':32} {'median wall s':>14} {'vs import qwen_tts':>20}")
    for label, wall in rows:
        print(f"{label:32} {wall:14.3f} {wall / reference:19.2f}x")


if __name__ == "__main__":
    main()
