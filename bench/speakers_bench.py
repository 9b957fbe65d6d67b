#!/usr/bin/env python3
"""What the speaker stage adds to voice-split, per minute of audio (not run by the tests).

    .venv/bin/python bench/speakers_bench.py [--minutes 3] [--work DIR] [--demucs] [--json-out FILE]

1. Builds (once, cached in --work) an interview: Piper "joe" and espeak-ng "ann" (female) taking
   turns of 1-3 sentences with short pauses, a music bed under every third turn.
2. Runs the whole voice-split pipeline cold (empty caches) twice on it, in one process with the
   models already loaded: without the speaker stage (`find_speakers=False`, what voice-split did
   before) and with it (`--speaker auto`). Without --demucs no separation runs (as --no-separate);
   with it, a real-size htdemucs with random weights (same speed as the real one) separates the
   windows.
3. Prints seconds per stage and per minute of audio side by side (separate_s includes scoring the
   candidate clips), the added time, how many speakers were found, and how much of the exported
   clips is the chosen voice alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))

import numpy as np  # noqa: E402


def build_interview(path: Path, minutes: float, seed: int = 0) -> list[tuple[float, float, str]]:
    """Alternating turns; returns (start, end, voice) of every sentence."""
    import soundfile as sf
    from conversation import ANN, ESPEAK_VOICES, JOE, espeak_sentences
    from speech import RATE, music_bed, synthesize_sentences

    voices = {
        "joe": synthesize_sentences(JOE)[0],
        "ann": espeak_sentences(ANN, ESPEAK_VOICES["ann"]),
    }
    for sentences in voices.values():
        for s in sentences:
            s *= 0.5 / max(1e-6, float(np.abs(s).max()))
    rng = np.random.default_rng(seed)
    parts: list[np.ndarray] = [np.zeros(int(0.5 * RATE), np.float32)]
    segments: list[tuple[float, float, str]] = []
    cursor, turn = 0.5, 0
    while cursor < minutes * 60:
        who = ("joe", "ann")[turn % 2]
        turn_parts = []
        for _ in range(int(rng.integers(1, 4))):
            sentence = voices[who][int(rng.integers(len(voices[who])))]
            segments.append((round(cursor, 3), round(cursor + sentence.size / RATE, 3), who))
            pause = np.zeros(int(rng.uniform(0.3, 0.9) * RATE), np.float32)
            turn_parts += [sentence, pause]
            cursor += (sentence.size + pause.size) / RATE
        block = np.concatenate(turn_parts)
        if turn % 3 == 2:
            block = block + 0.15 * music_bed(block.size / RATE + 0.01, seed=turn)[: block.size]
        parts.append(block)
        turn += 1
    mix = np.concatenate(parts)
    mix += rng.normal(0, 10 ** (-60 / 20), mix.size).astype(np.float32)
    sf.write(str(path), np.clip(mix, -0.99, 0.99), RATE, subtype="PCM_16")
    return segments


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "speakers_bench")
    parser.add_argument("--demucs", action="store_true", help="separate with a real-size random htdemucs")
    parser.add_argument("--clips", type=int, default=5)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    audio = args.work / f"interview_{args.minutes:g}min.wav"
    truth_file = audio.with_suffix(".json")
    if not audio.is_file() or not truth_file.is_file():
        truth_file.write_text(json.dumps(build_interview(audio, args.minutes)))
    truth = json.loads(truth_file.read_text())

    from audiobox.separate import SeparatorOptions
    from audiobox.split import SplitOptions, VoiceSplitter

    separator = SeparatorOptions()
    if args.demucs:
        from tiny_demucs import build_demucs_repo

        repo = args.work / "htdemucs_random"
        if not (repo / "htdemucs.yaml").is_file():
            build_demucs_repo(repo, preset="htdemucs")
        separator = SeparatorOptions(repo=repo)
    cache = args.work / "cache"
    splitter = VoiceSplitter(cache / "split", cache / "downloads")
    splitter.speaker_encoder()  # models loaded before timing, as in a long-lived process
    if args.demucs:
        splitter.separator(separator)

    runs = {}
    for name, find in (("without speakers", False), ("with speakers", True)):
        shutil.rmtree(cache / "split", ignore_errors=True)  # cold: nothing cached
        opts = SplitOptions(
            audio=audio,
            clips=args.clips,
            separate=args.demucs,
            separator=separator,
            find_speakers=find,
            out_dir=args.work / "clips",
        )
        c0, w0 = time.process_time(), time.perf_counter()
        result = splitter.run(opts)
        runs[name] = {
            "wall_s": time.perf_counter() - w0,
            "cpu_s": time.process_time() - c0,
            "timings": result.timings,
            "result": result,
        }

    minutes = runs["with speakers"]["result"].stats["audio_s"] / 60
    result = runs["with speakers"]["result"]
    purity = []
    for clip in [*result.clips, result.reference]:
        talk: dict[str, float] = {}
        for a, b, who in truth:
            talk[who] = talk.get(who, 0.0) + max(0.0, min(clip.end, b) - max(clip.start, a))
        main_voice = max(talk, key=talk.get)
        purity.append(1 - sum(v for w, v in talk.items() if w != main_voice) / clip.duration)
    stages = ["vad_s", "speakers_s", "separate_s", "export_s", "total_s"]
    print(f"{minutes:.1f} min interview (joe + ann), Demucs: {'htdemucs random' if args.demucs else 'off'}")
    print(f"{'stage':<12}" + "".join(f"{n:>30}" for n in runs))
    for stage in stages:
        row = f"{stage:<12}"
        for run in runs.values():
            t = run["timings"].get(stage)
            row += f"{'-':>30}" if t is None else f"{t:>12.2f} s = {t / minutes:6.2f} s/min"
        print(row)
    added = runs["with speakers"]["timings"]["total_s"] - runs["without speakers"]["timings"]["total_s"]
    print(f"{'cpu_s':<12}" + "".join(f"{v['cpu_s'] / minutes:>21.2f} s/min cpu" for v in runs.values()))
    print(
        f"added by the speaker stage: {added:.2f} s = {added / minutes:.2f} s per minute of audio: the speaker "
        f"map costs {runs['with speakers']['timings']['speakers_s'] / minutes:.2f} s/min, and only one voice's "
        "speech is then separated and scored"
    )
    print(
        f"speakers found: {len(result.speakers.map.speakers)} (truth 2); chosen: {result.speakers.chosen.reason}; "
        f"clips + reference alone-voice share: min {min(purity):.3f}"
    )
    if args.json_out:
        summary = {
            "minutes": round(minutes, 3),
            "demucs": args.demucs,
            "runs": {
                k: {"wall_s": round(v["wall_s"], 3), "cpu_s": round(v["cpu_s"], 3), "timings": v["timings"]}
                for k, v in runs.items()
            },
            "added_s_per_min": round(added / minutes, 3),
            "speakers_found": len(result.speakers.map.speakers),
            "min_clip_purity": round(min(purity), 4),
        }
        args.json_out.write_text(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
