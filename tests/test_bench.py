"""The speed benches run on the tiny checkpoint: their numbers are what docs/benchmarks.md reports,
and gpu_bench.py can only be checked on CPU here, so a broken bench would go unnoticed until a GPU
box is rented."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_bench(script: str, *args: str, tmp_path: Path) -> list[dict]:
    out = tmp_path / f"{script}.jsonl"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args, "--json-out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_cpu_bench_times_every_engine_at_the_forced_length(tiny_models, tmp_path):
    [summary] = run_bench(
        "cpu_bench.py",
        str(tiny_models / "custom_voice"),
        "--dtype",
        "bfloat16",
        "--threads",
        "1",
        "--frames",
        "4",
        "--reps",
        "1",
        tmp_path=tmp_path,
    )
    from audiobox.tts.weights import bf16_packing_is_exact

    if bf16_packing_is_exact():  # CPUs where audiobox packs bf16 weights (native bf16, e.g. AVX512-BF16)
        assert set(summary["engines"]) == {"upstream", "fast", "packed"}
    else:  # elsewhere the packed engine is reported as skipped, not a failure
        assert set(summary["engines"]) == {"upstream", "fast"}
        assert "bit-identical" in summary["skipped"]["packed"]
    for result in summary["engines"].values():
        assert result["frames"] == [4]
        assert result["x"] > 0 and result["x_of_floor"] > 0
    assert summary["weight_bytes_per_frame"]["total"] > summary["weight_bytes_per_frame"]["talker"] > 0
    assert summary["read_bandwidth_gbs"] > 0


def test_gpu_bench_runs_on_cpu_and_skips_what_it_cannot_run(tiny_models, tmp_path):
    rows = run_bench(
        "gpu_bench.py",
        "--model",
        f"tiny={tiny_models / 'custom_voice'}",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--frames",
        "4",
        "--reps",
        "1",
        "--batch",
        "2",
        tmp_path=tmp_path,
    )
    by_engine = {row["engine"]: row for row in rows}
    assert set(by_engine) == {"upstream", "fast", "faster-qwen3-tts"}
    assert "skipped" in by_engine["faster-qwen3-tts"]
    for engine in ("upstream", "fast"):
        row = by_engine[engine]
        assert row["audio_s"] == pytest.approx(4 * 0.08)
        assert row["rtf"] > 0 and row["batch"] == 2 and row["batch_throughput_rtf"] > 0
