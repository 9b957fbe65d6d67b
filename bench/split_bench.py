#!/usr/bin/env python3
"""voice-split speed on a podcast-like recording (not run by the tests).

    .venv/bin/python bench/split_bench.py [--minutes 10] [--work DIR] [--skip-demucs] [--clips 5 --length 12]

1. Builds (once, cached in --work) a podcast-like recording: Piper "joe" speech in sections of
   20-90 s with natural pauses, music interludes, a music bed under some sections and silences.
2. VAD throughput in audio seconds per CPU second (process CPU time, all threads):
     ours      audiobox.vad (silero-vad's sequence ONNX model, blocks of 512 frames, 1 thread)
     package   silero-vad's default path: load_silero_vad() (TorchScript) + get_speech_timestamps
   on the same 16 kHz audio, plus how well the two agree.
3. Demucs share: the full split pipeline with a real-size random htdemucs (41,984,456 parameters,
   tests/fixtures/tiny_demucs.py preset "htdemucs") as a local repo; reports how much of the audio
   went through Demucs, the separation time, and what separating the whole file would have cost
   at the measured speed.
Prints a side-by-side table with ratios, and writes the numbers to --work/split_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))

import numpy as np  # noqa: E402

RATE = 24000


def build_podcast(path: Path, minutes: float, seed: int = 0) -> dict:
    """Sections of speech (some over music), music interludes and silences; returns the layout."""
    import soundfile as sf
    from speech import SENTENCES_A, SENTENCES_B, music_bed, synthesize_sentences

    extra = [
        "So let us start with the question everybody keeps asking me about.",
        "Honestly, I did not expect the answer to be this simple.",
        "We tried three different approaches before anything worked at all.",
        "The first one failed because the parts were simply too old.",
        "And that, in the end, is why we keep doing this every week.",
        "If you have a story like this, please write to us.",
        "Right, let me read the next message from a listener.",
        "It came in on Tuesday, and it made the whole team laugh.",
    ]
    sentences, engine = synthesize_sentences(SENTENCES_A + SENTENCES_B + extra)
    for s in sentences:
        s *= 0.6 / max(1e-6, float(np.abs(s).max()))
    rng = np.random.default_rng(seed)
    total = int(minutes * 60 * RATE)
    out: list[np.ndarray] = []
    layout = {"speech_s": 0.0, "music_only_s": 0.0, "silence_s": 0.0, "sections": 0, "engine": engine}
    n = 0
    out.append(music_bed(8.0, seed=1))
    layout["music_only_s"] += 8.0
    n += 8 * RATE
    while n < total:
        section_s = float(rng.uniform(20, 90))
        parts, length = [], 0
        while length < section_s * RATE:
            s = sentences[int(rng.integers(len(sentences)))]
            parts.append(s)
            layout["speech_s"] += len(s) / RATE
            gap = np.zeros(int(rng.uniform(0.25, 1.2) * RATE), np.float32)
            parts.append(gap)
            length += len(s) + len(gap)
        block = np.concatenate(parts)
        if rng.random() < 0.4:  # a music bed under this section
            block = (
                block + 0.15 * music_bed(len(block) / RATE + 0.01, seed=int(rng.integers(1000)))[: len(block)]
            )
        out.append(block)
        n += len(block)
        layout["sections"] += 1
        if rng.random() < 0.5:
            m = float(rng.uniform(4, 15))
            out.append(music_bed(m, seed=int(rng.integers(1000))))
            layout["music_only_s"] += m
            n += int(m * RATE)
        else:
            q = float(rng.uniform(1.5, 4))
            out.append(np.zeros(int(q * RATE), np.float32))
            layout["silence_s"] += q
            n += int(q * RATE)
    mix = np.concatenate(out)[:total]
    mix = mix + rng.normal(0, 10 ** (-55 / 20), mix.size).astype(np.float32)
    sf.write(str(path), np.clip(mix, -0.99, 0.99), RATE, subtype="PCM_16")
    layout["duration_s"] = len(mix) / RATE
    return layout


def cpu_time(fn, repeat: int = 1):
    """(result, best CPU seconds, best wall seconds) over `repeat` runs."""
    best_cpu = best_wall = float("inf")
    result = None
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        result = fn()
        best_cpu = min(best_cpu, time.process_time() - c0)
        best_wall = min(best_wall, time.perf_counter() - w0)
    return result, best_cpu, best_wall


def frame_agreement(a, b, total_s: float, hop: float = 0.01) -> float:
    grid = np.arange(0, total_s, hop)

    def mask(spans):
        m = np.zeros(grid.size, bool)
        for s, e in spans:
            m |= (grid >= s) & (grid < e)
        return m

    return float((mask(a) == mask(b)).mean())


def bench_vad(audio16: np.ndarray, repeat: int) -> dict:
    import torch
    from audiobox.vad import load_vad, preserve_torch_threads

    total_s = audio16.size / 16000
    det = load_vad()
    ours, cpu_ours, wall_ours = cpu_time(lambda: det.speech_spans(audio16, 16000), repeat)
    threads_before = torch.get_num_threads()
    with preserve_torch_threads():
        from silero_vad import get_speech_timestamps, load_silero_vad

        model = load_silero_vad()  # the package default: TorchScript
        threads_in_package = torch.get_num_threads()  # what `import silero_vad` left behind (1)
        tensor = torch.from_numpy(audio16)
        theirs, cpu_jit, wall_jit = cpu_time(
            lambda: get_speech_timestamps(
                tensor, model, sampling_rate=16000, return_seconds=True, time_resolution=3
            ),
            repeat,
        )
    return {
        "audio_s": round(total_s, 1),
        "ours": {
            "backend": "sequence ONNX (audiobox.vad)",
            "cpu_s": round(cpu_ours, 3),
            "wall_s": round(wall_ours, 3),
            "audio_s_per_cpu_s": round(total_s / cpu_ours, 1),
            "segments": len(ours),
        },
        "package_default": {
            "backend": "TorchScript (load_silero_vad + get_speech_timestamps)",
            "torch_threads": threads_in_package,
            "cpu_s": round(cpu_jit, 3),
            "wall_s": round(wall_jit, 3),
            "audio_s_per_cpu_s": round(total_s / cpu_jit, 1),
            "segments": len(theirs),
        },
        "speedup_per_cpu_s": round(cpu_jit / cpu_ours, 2),
        "frame_agreement": round(
            frame_agreement(
                [(s.start, s.end) for s in ours], [(d["start"], d["end"]) for d in theirs], total_s
            ),
            4,
        ),
        "torch_threads_restored": torch.get_num_threads() == threads_before,
    }


def bench_demucs(path: Path, work: Path, clips: int, length: float, threads: int | None) -> dict:
    from audiobox.separate import SeparatorOptions
    from audiobox.split import SplitOptions, VoiceSplitter
    from tiny_demucs import build_demucs_repo

    repo = work / "htdemucs_random"
    if not (repo / "htdemucs.yaml").is_file():
        build_demucs_repo(repo, preset="htdemucs")
    cache = work / "cache"
    import shutil

    shutil.rmtree(cache / "split", ignore_errors=True)  # time a cold run
    splitter = VoiceSplitter(cache / "split", cache / "downloads")
    opts = SplitOptions(
        audio=path,
        clips=clips,
        length=length,
        out_dir=work / "clips",
        separator=SeparatorOptions(repo=repo, threads=threads),
    )
    c0 = time.process_time()
    result = splitter.run(opts)
    cpu = time.process_time() - c0
    st = result.stats
    sep_s = result.timings["separate_s"]
    speed = st["separated_s"] / sep_s if sep_s else float("nan")  # audio s per wall s
    whole = st["audio_s"] / speed if speed else float("nan")
    old_style = min(st["audio_s"], 2 * clips * 4 * length)  # the old tool: 2 x clips windows of 4 x length
    return {
        "model": "htdemucs architecture, random weights (41,984,456 parameters)",
        "load_s": round(splitter._separator.load_s, 2) if splitter._separator else None,
        "audio_s": st["audio_s"],
        "speech_s": st["speech_s"],
        "windows": st["windows"],
        "separated_s": st["separated_s"],
        "separated_share": st["separated_share"],
        "separate_wall_s": round(sep_s, 1),
        "separation_x_realtime": round(speed, 2),
        "whole_file_estimate_s": round(whole, 1),
        "old_tool_window_s": old_style,
        "old_tool_estimate_s": round(old_style / speed, 1) if speed else None,
        "pipeline_total_s": round(result.timings["total_s"], 1),
        "pipeline_cpu_s": round(cpu, 1),
        "clips": len(result.clips),
        "timings": {k: round(v, 2) for k, v in result.timings.items()},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "bench-split")
    parser.add_argument("--repeat", type=int, default=3, help="VAD runs per backend (best is kept)")
    parser.add_argument("--skip-demucs", action="store_true")
    parser.add_argument("--clips", type=int, default=5)
    parser.add_argument("--length", type=float, default=12.0)
    parser.add_argument("--threads", type=int, help="torch threads for Demucs (default: all cores)")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    path = args.work / f"podcast_{args.minutes:g}min.wav"
    layout_path = path.with_suffix(".json")
    if not path.is_file() or not layout_path.is_file():
        t = time.perf_counter()
        layout = build_podcast(path, args.minutes)
        layout["build_s"] = round(time.perf_counter() - t, 1)
        layout_path.write_text(json.dumps(layout, indent=2))
    layout = json.loads(layout_path.read_text())

    from audiobox.audio import load_audio

    audio16 = load_audio(path, 16000).samples
    report = {
        "machine": {"cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0))},
        "recording": layout,
        "vad": bench_vad(audio16, args.repeat),
    }
    if not args.skip_demucs:
        report["demucs"] = bench_demucs(path, args.work, args.clips, args.length, args.threads)
    (args.work / "split_bench.json").write_text(json.dumps(report, indent=2))

    v = report["vad"]
    print(
        f"recording: {layout['duration_s']:.0f} s ({layout['speech_s']:.0f} s speech, "
        f"{layout['music_only_s']:.0f} s music only, {layout['silence_s']:.0f} s silence; {layout['engine']})"
    )
    print()
    print(f"{'VAD':<34}{'ours (sequence ONNX)':>22}{'package default (JIT)':>24}{'ratio':>9}")
    print(
        f"{'CPU seconds':<34}{v['ours']['cpu_s']:>22.2f}{v['package_default']['cpu_s']:>24.2f}"
        f"{v['package_default']['cpu_s'] / v['ours']['cpu_s']:>8.1f}x"
    )
    print(
        f"{'audio seconds per CPU second':<34}{v['ours']['audio_s_per_cpu_s']:>22.0f}"
        f"{v['package_default']['audio_s_per_cpu_s']:>24.0f}{v['speedup_per_cpu_s']:>8.1f}x"
    )
    print(
        f"{'wall seconds':<34}{v['ours']['wall_s']:>22.2f}{v['package_default']['wall_s']:>24.2f}"
        f"{v['package_default']['wall_s'] / v['ours']['wall_s']:>8.1f}x"
    )
    print(f"{'segments':<34}{v['ours']['segments']:>22}{v['package_default']['segments']:>24}")
    print(
        f"frame agreement {v['frame_agreement']:.2%}; torch threads restored after silero import: "
        f"{v['torch_threads_restored']} (package left {v['package_default']['torch_threads']})"
    )
    if "demucs" in report:
        d = report["demucs"]
        print()
        print(
            f"{'Demucs (real-size random htdemucs)':<34}{'this pipeline':>22}{'whole file':>24}{'ratio':>9}"
        )
        print(
            f"{'audio through Demucs (s)':<34}{d['separated_s']:>22.0f}{d['audio_s']:>24.0f}"
            f"{d['audio_s'] / max(d['separated_s'], 1e-9):>8.1f}x"
        )
        print(f"{'share of the recording':<34}{d['separated_share']:>22.1%}{1.0:>24.0%}")
        print(
            f"{'separation wall s':<34}{d['separate_wall_s']:>22.1f}{d['whole_file_estimate_s']:>24.1f}"
            f"{d['whole_file_estimate_s'] / max(d['separate_wall_s'], 1e-9):>8.1f}x"
        )
        print(
            f"old tool (2 x clips windows of 4 x length = {d['old_tool_window_s']:.0f} s): "
            f"~{d['old_tool_estimate_s']} s of separation, plus a model reload per window"
        )
        print(
            f"speed {d['separation_x_realtime']:.2f}x realtime; {d['windows']} windows; model load {d['load_s']} s; "
            f"pipeline {d['pipeline_total_s']} s wall, {d['pipeline_cpu_s']} s CPU; {d['clips']} clips"
        )
    print(f"\nnumbers: {args.work / 'split_bench.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
