#!/usr/bin/env python3
"""Streaming and concurrent serving speed: the stream engine that voice-serve runs.

Measures, on one loaded model (a full-size random-weight checkpoint from make_fullsize_qwen.py):

* time to first audio of one stream (submit -> first decoded chunk), median of --reps;
* a whole take (``Synthesizer.speak``) against the same request streamed: streaming must not be
  slower end to end (the codec decode overlaps generation on its own thread);
* throughput, audio seconds per wall second, for 1, 2, 4 concurrent clients (rows batched into the
  same decode steps) against the same requests served one at a time.

Every request asks for exactly --frames frames (random weights rarely sample the end token; the
frame count actually produced is recorded).  Speed figures in docs/benchmarks.md.

    .venv/bin/python bench/make_fullsize_qwen.py OUT --preset 0.6b --kinds custom_voice
    .venv/bin/python bench/serve_bench.py OUT/custom_voice [--dtype auto] [--frames 25] [--clients 1,2,4]
    .venv/bin/python bench/serve_bench.py OUT/custom_voice --device cuda      # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

TEXT = "The quick brown fox jumps over the lazy dog, and the server keeps talking."


def cpu_steal() -> float:
    """Seconds of CPU steal so far (noise check; 0 on a quiet VM)."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


def load_average() -> float:
    return os.getloadavg()[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="a CustomVoice model dir (full-size random weights for speed)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--frames", type=int, default=25, help="frames per request (12.5 per audio second)")
    parser.add_argument("--clients", default="1,2,4")
    parser.add_argument("--reps", type=int, default=3, help="first-audio repetitions")
    parser.add_argument("--first-chunk", type=int, help="frames in the first decoded chunk (engine default)")
    parser.add_argument("--chunk", type=int, help="frames in later chunks (engine default)")
    parser.add_argument(
        "--throughput-reps", type=int, default=2, help="concurrent/one-by-one pairs per client count (median)"
    )
    parser.add_argument("--json-out", help="append the summary as one JSON line here")
    args = parser.parse_args(argv)

    from audiobox.tts.runtime import RuntimeOptions, load_tts
    from audiobox.tts.settings import GenerationSettings
    from audiobox.tts.stream import StreamEngine, StreamJob, StreamOptions
    from audiobox.tts.synth import Synthesizer, VoiceSpec

    loaded = load_tts(
        args.model,
        RuntimeOptions(device=args.device, dtype=args.dtype, attention="sdpa", threads=args.threads),
        "custom_voice",
    )
    synth = Synthesizer(loaded)
    speakers = loaded.info.speakers
    settings = GenerationSettings(profile="balanced", max_new_tokens=args.frames + 1)
    clients = [int(c) for c in args.clients.split(",")]
    defaults = StreamOptions()
    options = StreamOptions(
        first_chunk_frames=args.first_chunk or defaults.first_chunk_frames,
        chunk_frames=args.chunk or defaults.chunk_frames,
        max_batch=max(clients),
    )
    engine = StreamEngine(synth, options)

    def job(i: int) -> StreamJob:
        return StreamJob(TEXT, VoiceSpec.builtin(speakers[i % len(speakers)]), "english", settings, 100 + i)

    def run_concurrent(jobs: list) -> tuple[float, float, list]:
        started = time.perf_counter()
        handles = [engine.submit(j) for j in jobs]
        audio = sum(len(h.read_all()) for h in handles) / 24000
        return audio, time.perf_counter() - started, handles

    steal0, load0 = cpu_steal(), load_average()
    print(
        f"model {args.model} device {loaded.device} dtype {loaded.dtype} weights {loaded.weights}", flush=True
    )
    run_concurrent([job(0)])  # warm-up (first-call allocations, lazy imports)

    firsts, stream_walls, frames = [], [], []
    for rep in range(args.reps):
        audio, wall, [handle] = run_concurrent([job(rep)])
        firsts.append(handle.stats.first_audio_sec)
        stream_walls.append(wall / audio)
        frames.append(handle.stats.frames)
    whole = []
    for rep in range(args.reps):
        started = time.perf_counter()
        j = job(rep)
        [take] = synth.speak(j.text, j.voice, j.language, j.settings, seed=j.seed)
        whole.append((time.perf_counter() - started) / take.duration)
    summary = {
        "model": args.model,
        "device": loaded.device,
        "dtype": loaded.dtype,
        "weights": loaded.weights,
        "frames": args.frames,
        "frames_made": frames,
        "first_audio_sec": round(statistics.median(firsts), 3),
        "first_audio_runs": [round(f, 3) for f in firsts],
        "stream_wall_per_audio": round(statistics.median(stream_walls), 3),
        "whole_take_wall_per_audio": round(statistics.median(whole), 3),
        "throughput": {},
    }
    print(
        f"first audio {summary['first_audio_sec']} s (runs {summary['first_audio_runs']}); "
        f"wall/audio streamed {summary['stream_wall_per_audio']} vs whole take "
        f"{summary['whole_take_wall_per_audio']}",
        flush=True,
    )
    for count in clients:
        jobs = [job(i) for i in range(count)]
        pairs = []
        for _ in range(args.throughput_reps):  # alternate, so drifting load hits both sides alike
            audio_c, wall_c, _ = run_concurrent(jobs)
            audio_s, wall_s = 0.0, 0.0
            for j in jobs:
                a, w, _ = run_concurrent([j])
                audio_s += a
                wall_s += w
            pairs.append((audio_c / wall_c, audio_s / wall_s))
        row = {
            "concurrent_audio_per_wall": round(statistics.median(c for c, _ in pairs), 3),
            "one_by_one_audio_per_wall": round(statistics.median(o for _, o in pairs), 3),
            "gain": round(statistics.median(c / o for c, o in pairs), 2),
            "gains": [round(c / o, 2) for c, o in pairs],
        }
        summary["throughput"][str(count)] = row
        print(f"{count} clients: {row}", flush=True)
    summary["chunks"] = {"first": options.first_chunk_frames, "later": options.chunk_frames}
    summary["codec"] = {"calls": engine.codec_calls, "most_rows_in_one_call": engine.max_codec_rows}
    engine.close()
    summary["noise"] = {
        "cpu_steal_sec": round(cpu_steal() - steal0, 2),
        "load_avg_start": round(load0, 2),
        "load_avg_end": round(load_average(), 2),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(summary), flush=True)
    if args.json_out:
        with open(args.json_out, "a") as out:
            out.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
