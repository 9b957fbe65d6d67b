#!/usr/bin/env python3
"""Peak memory (RSS) of voice-split on a long 48 kHz stereo recording (not run by the tests).

    .venv/bin/python bench/split_memory.py --speech SPEECH.wav [--hours 2] [--work DIR] [--demucs-repo DIR]

Builds (once, in --work) an N-hour 48 kHz stereo 16-bit WAV by looping SPEECH.wav with ffmpeg,
then runs the real `voice-split --audio` on it in a child process and reports the child's peak
RSS (ru_maxrss from wait4) and wall time. Without --demucs-repo a tiny random htdemucs is built
(tests/fixtures/make_tiny_models.py): Demucs only sees the chosen windows, so its size barely
moves the peak, which comes from decoding the whole range for the VAD scan.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_long_wav(speech: Path, hours: float, out: Path) -> Path:
    if not out.is_file():
        cmd = [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-stream_loop",
            "-1",
            "-i",
            str(speech),
            "-t",
            str(hours * 3600),
        ]
        subprocess.run([*cmd, "-ac", "2", "-ar", "48000", "-c:a", "pcm_s16le", str(out)], check=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--speech", type=Path, required=True, help="a speech recording to loop")
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "split_memory")
    parser.add_argument("--demucs-repo", type=Path, help="a Demucs repo (default: a tiny random htdemucs)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    long_wav = build_long_wav(args.speech, args.hours, args.work / f"long_{args.hours:g}h_48k_stereo.wav")
    repo = args.demucs_repo
    if repo is None:
        sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
        from make_tiny_models import build_tiny_models

        repo = args.work / "tiny_demucs"
        if not repo.exists():
            repo = build_tiny_models(args.work / "tiny", only=["demucs"])["demucs"]
    cmd = [sys.executable, str(ROOT / "apps" / "voice-split" / "voice-split.py"), "--audio", str(long_wav)]
    cmd += ["--demucs-repo", str(repo), "--clips", "3", "--refresh", "--json"]
    cmd += ["--cache", str(args.work / "cache"), "--out", str(args.work / "out")]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    err = proc.stderr
    # the largest waited-for descendant: the voice-split process (ffmpeg/ffprobe children are small)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "file": long_wav.name,
        "file_bytes": long_wav.stat().st_size,
        "exit": proc.returncode,
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "wall_s": round(time.monotonic() - started, 1),
        "error": err.decode(errors="replace").strip().splitlines()[-1:] if proc.returncode else [],
    }
    print(json.dumps(result, indent=2))
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
