"""audiobox.quality: the numpy measures and the score that voice-clone, voice-split and take ranking share."""

from __future__ import annotations

import numpy as np
import pytest
from audiobox.quality import (
    QUALITY_VERSION,
    clipping_ratio,
    integrated_loudness,
    loudness_gain,
    measure,
    quality_score,
)

SR = 24000


def speechlike(seconds: float, seed: int = 0, level: float = 0.3) -> np.ndarray:
    """Harmonic 'syllables' (4 per second) with a varying pitch: enough structure for level statistics."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voice = sum((0.6**k) * np.sin(k * phase) for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)), 0, None) ** 0.5
    x = voice * envelope
    return (level * x / np.abs(x).max()).astype(np.float32)


def with_pauses(
    parts: list[np.ndarray], pause_s: float = 0.6
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    gap = np.zeros(int(pause_s * SR), np.float32)
    out, spans, pos = [gap], [], len(gap)
    for p in parts:
        spans.append((pos / SR, (pos + len(p)) / SR))
        out += [p, gap]
        pos += len(p) + len(gap)
    return np.concatenate(out), spans


def test_loudness_matches_bs1770_reference_values():
    # Values ffmpeg's ebur128 filter reports for the same signals (figures, measured once).
    sine_1k = 0.3 * np.sin(2 * np.pi * 1000 * np.arange(3 * SR) / SR)
    assert integrated_loudness(sine_1k, SR) == pytest.approx(-13.4, abs=0.15)
    sine_100 = 0.3 * np.sin(2 * np.pi * 100 * np.arange(3 * 16000) / 16000)
    assert integrated_loudness(sine_100, 16000) == pytest.approx(-15.2, abs=0.15)
    noise = np.random.default_rng(0).normal(0, 0.05, 3 * 48000)
    assert integrated_loudness(noise, 48000) == pytest.approx(-22.9, abs=0.2)
    assert integrated_loudness(np.zeros(SR), SR) is None  # all below the -70 LUFS gate
    louder = integrated_loudness(2 * sine_1k, SR)
    assert louder - integrated_loudness(sine_1k, SR) == pytest.approx(6.02, abs=0.05)


def test_loudness_gain_reaches_target_but_respects_the_peak_ceiling():
    x = speechlike(4.0, level=0.05)
    gain = loudness_gain(x, SR, target_lufs=-20.0, peak_ceiling=0.89)
    assert integrated_loudness(x * gain, SR) == pytest.approx(-20.0, abs=0.1)
    peaky = x.copy()
    peaky[100] = 0.8  # one loud click limits the gain
    gain = loudness_gain(peaky, SR, target_lufs=-10.0, peak_ceiling=0.89)
    assert np.abs(peaky * gain).max() == pytest.approx(0.89, abs=1e-4)


def test_clipping_counts_flat_runs_not_single_peaks():
    x = speechlike(2.0, level=0.5)
    assert clipping_ratio(x) == 0.0
    single = x.copy()
    single[::5000] = 1.0  # isolated full-scale samples
    assert clipping_ratio(single) == 0.0
    clipped = np.clip(x * 4, -1, 1)
    assert clipping_ratio(clipped) > 0.05


def test_snr_estimate_tracks_the_mixed_noise_level():
    clean, spans = with_pauses([speechlike(2.5, s) for s in range(3)])
    speech_power = float(np.mean(np.concatenate([clean[int(a * SR) : int(b * SR)] for a, b in spans]) ** 2))
    rng = np.random.default_rng(3)
    estimates = []
    for snr in (5.0, 15.0, 30.0):
        noise = rng.normal(0, np.sqrt(speech_power / 10 ** (snr / 10)), clean.size).astype(np.float32)
        m = measure(clean + noise, SR, speech_spans=spans)
        assert m.snr_db == pytest.approx(snr, abs=3.0)
        estimates.append(m.snr_db)
    assert estimates == sorted(estimates)
    blind = measure(clean + noise, SR)  # without spans: percentile estimate
    assert blind.snr_db > 20


def test_silence_ratio_and_speaking_rate():
    x, spans = with_pauses([speechlike(3.0), speechlike(3.0, 1)], pause_s=1.0)
    m = measure(x, SR, speech_spans=spans)
    assert m.speech_s == pytest.approx(6.0, abs=0.01)
    assert m.silence_ratio == pytest.approx(3.0 / 9.0, abs=0.01)
    text = "a sentence of about eighty four characters, spoken in six seconds of actual speech."
    m = measure(x, SR, speech_spans=spans, transcript=text, language="english")
    assert m.chars_per_second == pytest.approx(len(text) / 6.0, rel=1e-3)
    assert m.rate_ratio == pytest.approx(m.chars_per_second / 14.0, rel=1e-3)
    assert measure(np.zeros(0, np.float32), SR).silence_ratio == 1.0


def test_score_prefers_clean_over_noisy_clipped_or_sparse():
    clean, spans = with_pauses([speechlike(3.0, s) for s in range(2)], pause_s=0.3)
    rng = np.random.default_rng(1)
    noisy = clean + rng.normal(0, 0.05, clean.size).astype(np.float32)
    clipped = np.clip(clean * 5, -1, 1)
    sparse, sparse_spans = with_pauses([speechlike(1.0)], pause_s=3.0)
    scores = {
        name: quality_score(measure(x, SR, speech_spans=s))
        for name, x, s in [
            ("clean", clean, spans),
            ("noisy", noisy, spans),
            ("clipped", clipped, spans),
            ("sparse", sparse, sparse_spans),
        ]
    }
    assert scores["clean"].score > 0.9
    for other in ("noisy", "clipped", "sparse"):
        assert scores[other].score < scores["clean"].score - 0.15, other
    assert scores["clipped"].parts["clipping"] == 0.0
    assert set(scores["clean"].parts) == {"snr", "clipping", "silence"}  # no transcript: no rate term
    with_text = quality_score(measure(clean, SR, speech_spans=spans, transcript="x" * 500))
    assert with_text.parts["rate"] == 0.0 and with_text.score < scores["clean"].score
    assert isinstance(QUALITY_VERSION, int)
