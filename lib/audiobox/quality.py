"""How good is a stretch of recorded speech as material for a voice? Pure numpy measures + one score.

Used to rank clone-reference candidates (voice-clone), extracted clips (voice-split) and
generated takes. Everything here is cheap (a few ms per 10 s of audio) and needs no model.

Measures (all computed on the audio *as recorded*, before any gain, so clipping stays visible):

* ``clipping_ratio``: share of samples that sit in flat runs (>= 2 consecutive samples) at or
  above 0.99 of full scale. A single sample touching full scale is not counted; a squared-off
  waveform is.
* ``noise_floor_dbfs`` / ``speech_level_dbfs`` / ``snr_db``: from 30 ms frames (10 ms hop).
  With speech spans (from VAD) the noise is the mean power of frames at least 30 ms away from any
  span and the signal the mean power of frames centred inside one; without spans (or with too little non-speech) the noise is the
  10th percentile of frame power and the signal the mean of the frames above the median. SNR is
  (signal - noise) / noise, in dB, capped to [-10, 60].
* ``silence_ratio``: share of the clip that is not speech (spans if given, else frames more than
  30 dB below the loudest 5% of frames).
* ``loudness_lufs``: integrated loudness after ITU-R BS.1770 K-weighting with the -70 LUFS absolute
  and -10 LU relative gates, computed in the frequency domain per 400 ms block (the filters' power
  response applied to the block spectrum, which is what the energy sum needs; no IIR loop).
* ``chars_per_second`` / ``rate_ratio``: when a transcript is given, characters per second of
  speech and that rate divided by the language's typical pace (`audiobox.languages.pace`).

The score (``quality_score``) maps each measure to 0..1 and averages them with fixed weights:

    snr       0.40   clamp((snr_db - 10) / 25)          10 dB -> 0, 35 dB -> 1
    clipping  0.25   clamp(1 - clipping_ratio / 0.002)  0.2 % clipped samples -> 0
    silence   0.20   clamp(1 - (silence_ratio - 0.15) / 0.45)   <= 15 % silence -> 1, 60 % -> 0
    rate      0.15   clamp(1 - |log2(rate_ratio)|)      only with a transcript; half/double pace -> 0

Weights of measures that are unavailable are dropped and the rest renormalised.
``QUALITY_VERSION`` changes whenever a formula does, so caches keyed on it recompute.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

QUALITY_VERSION = 1

FRAME_S = 0.030
HOP_S = 0.010
CLIP_LEVEL = 0.99
SILENCE_FLOOR_S = 1e-10  # power floor (-100 dBFS) so digital silence stays finite

SCORE_WEIGHTS = {"snr": 0.40, "clipping": 0.25, "silence": 0.20, "rate": 0.15}


@dataclass
class QualityMeasures:
    """Raw measures of one clip. Times in seconds, levels in dBFS/LUFS."""

    duration_s: float
    peak: float
    rms_dbfs: float
    loudness_lufs: float | None
    clipping_ratio: float
    noise_floor_dbfs: float
    speech_level_dbfs: float
    snr_db: float
    speech_s: float
    silence_ratio: float
    chars_per_second: float | None = None
    rate_ratio: float | None = None

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class QualityScore:
    """0..1 overall and the 0..1 part per measure that went into it."""

    score: float
    parts: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"score": round(self.score, 4), "parts": {k: round(v, 4) for k, v in self.parts.items()}}


def _clamp(x: float, lo: float = 0.0, hi: float = 1.0) -> float:
    return float(min(hi, max(lo, x)))


def _db(power: float) -> float:
    return 10.0 * math.log10(max(power, SILENCE_FLOOR_S))


def frame_powers(
    samples: np.ndarray, sample_rate: int, frame_s: float = FRAME_S, hop_s: float = HOP_S
) -> np.ndarray:
    """Mean-square power of overlapping frames (one value per hop)."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    frame = max(1, int(round(frame_s * sample_rate)))
    hop = max(1, int(round(hop_s * sample_rate)))
    if x.size < frame:
        return np.array([float(np.mean(x * x))]) if x.size else np.zeros(0)
    csum = np.concatenate([[0.0], np.cumsum(x * x)])
    starts = np.arange(0, x.size - frame + 1, hop)
    return (csum[starts + frame] - csum[starts]) / frame


def clipping_ratio(samples: np.ndarray, level: float = CLIP_LEVEL) -> float:
    """Share of samples inside flat runs (>= 2 in a row) at or above `level` of full scale."""
    x = np.abs(np.asarray(samples, dtype=np.float32).reshape(-1))
    if x.size == 0:
        return 0.0
    hot = x >= level
    if not hot.any():
        return 0.0
    run = hot[1:] & hot[:-1]
    in_run = np.zeros_like(hot)
    in_run[1:] |= run
    in_run[:-1] |= run
    return float(in_run.sum()) / x.size


# --- loudness (BS.1770 K-weighting, frequency domain) -------------------------------------------------


def _biquad_power_response(
    b: Sequence[float], a: Sequence[float], freqs: np.ndarray, sample_rate: int
) -> np.ndarray:
    z = np.exp(-1j * 2.0 * np.pi * freqs / sample_rate)
    num = b[0] + b[1] * z + b[2] * z * z
    den = a[0] + a[1] * z + a[2] * z * z
    return np.abs(num / den) ** 2


def k_weighting_power(freqs: np.ndarray, sample_rate: int) -> np.ndarray:
    """|H(f)|^2 of the BS.1770 pre-filter (high shelf +4 dB above ~1.7 kHz) and RLB high-pass."""
    # High shelf: f0 = 1681.97 Hz, gain 3.99984 dB, Q 0.70718 (the standard's 48 kHz filter, re-derived per rate).
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / sample_rate)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf_b = [(vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0]
    shelf_a = [1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]
    # High-pass: f0 = 38.14 Hz, Q 0.5003.
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / sample_rate)
    a0 = 1.0 + k / q + k * k
    hp_b = [1.0, -2.0, 1.0]
    hp_a = [1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]
    return _biquad_power_response(shelf_b, shelf_a, freqs, sample_rate) * _biquad_power_response(
        hp_b, hp_a, freqs, sample_rate
    )


def integrated_loudness(samples: np.ndarray, sample_rate: int) -> float | None:
    """Integrated loudness in LUFS (mono), or None when everything is below the -70 LUFS gate."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    block = int(round(0.4 * sample_rate))
    hop = int(round(0.1 * sample_rate))
    if x.size == 0:
        return None
    if x.size < block:
        x = np.pad(x, (0, block - x.size))
    starts = np.arange(0, x.size - block + 1, hop)
    weight = k_weighting_power(np.fft.rfftfreq(block, 1.0 / sample_rate), sample_rate)
    powers = np.empty(starts.size)
    for i in range(0, starts.size, 256):  # batches of blocks keep memory small on long files
        idx = starts[i : i + 256, None] + np.arange(block)[None, :]
        spec = np.fft.rfft(x[idx], axis=1)
        energy = (np.abs(spec) ** 2) * weight[None, :]
        # Parseval for a real signal from its half spectrum: sum|x|^2 = (|X0|^2 + 2 sum|Xk|^2 + |XN/2|^2) / N
        energy[:, 1:] *= 2.0
        if block % 2 == 0:
            energy[:, -1] /= 2.0
        powers[i : i + 256] = energy.sum(axis=1) / (block * block)
    loud = -0.691 + 10.0 * np.log10(np.maximum(powers, 1e-20))
    gated = powers[loud > -70.0]
    if gated.size == 0:
        return None
    rel = -0.691 + 10.0 * math.log10(gated.mean()) - 10.0
    gated = powers[(loud > -70.0) & (loud > rel)]
    if gated.size == 0:
        return None
    return float(-0.691 + 10.0 * math.log10(gated.mean()))


def loudness_gain(
    samples: np.ndarray, sample_rate: int, target_lufs: float = -20.0, peak_ceiling: float = 0.89
) -> float:
    """Linear gain that brings the clip to `target_lufs` without pushing its peak above the ceiling.

    A single gain (no compressor or limiter) keeps the recording's dynamics and full bandwidth.
    """
    loud = integrated_loudness(samples, sample_rate)
    if loud is None:
        return 1.0
    gain = 10.0 ** ((target_lufs - loud) / 20.0)
    peak = float(np.max(np.abs(samples))) if np.size(samples) else 0.0
    if peak > 0 and peak * gain > peak_ceiling:
        gain = peak_ceiling / peak
    return float(gain)


# --- the measures ----------------------------------------------------------------------------------


def _span_masks(
    n_frames: int, spans: Iterable, hop_s: float, frame_s: float, guard_s: float = 0.03
) -> tuple[np.ndarray, np.ndarray]:
    """(speech, noise) frame masks: speech = frame centre inside a span; noise = the whole frame at
    least `guard_s` away from every span (frames straddling an edge count as neither)."""
    starts = np.arange(n_frames) * hop_s
    centres = starts + frame_s / 2.0
    speech = np.zeros(n_frames, dtype=bool)
    near = np.zeros(n_frames, dtype=bool)
    for span in spans:
        start, end = (span.start, span.end) if hasattr(span, "start") else span
        speech |= (centres >= start) & (centres < end)
        near |= (starts + frame_s > start - guard_s) & (starts < end + guard_s)
    return speech, ~near


def measure(
    samples: np.ndarray,
    sample_rate: int,
    *,
    speech_spans: Iterable | None = None,
    transcript: str | None = None,
    language: str | None = None,
    loudness: bool = True,
) -> QualityMeasures:
    """Measure a clip. `speech_spans` (seconds relative to the clip, objects with start/end or
    pairs) make the SNR and silence figures much more reliable; `transcript` adds speaking rate.
    `loudness=False` skips the (comparatively slow) BS.1770 figure when only the score is needed."""
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    duration = x.size / float(sample_rate) if sample_rate else 0.0
    if x.size == 0:
        return QualityMeasures(0.0, 0.0, -100.0, None, 0.0, -100.0, -100.0, -10.0, 0.0, 1.0)
    powers = frame_powers(x, sample_rate)
    db = 10.0 * np.log10(np.maximum(powers, SILENCE_FLOOR_S))
    spans = list(speech_spans) if speech_spans is not None else None
    if spans is not None:
        mask, noise_mask = _span_masks(powers.size, spans, HOP_S, FRAME_S)
        speech_s = float(
            sum(
                min(duration, (s.end if hasattr(s, "end") else s[1]))
                - max(0.0, (s.start if hasattr(s, "start") else s[0]))
                for s in spans
            )
        )
        speech_s = max(0.0, min(duration, speech_s))
    else:
        loud_ref = float(np.percentile(db, 95))
        mask = db > loud_ref - 30.0
        noise_mask = ~mask
        speech_s = float(mask.mean()) * duration
    silence = _clamp(1.0 - speech_s / duration) if duration > 0 else 1.0
    enough_noise = spans is not None and noise_mask.sum() * HOP_S >= 0.2 and mask.any()
    if enough_noise:
        noise = float(powers[noise_mask].mean())
        signal = float(powers[mask].mean())
    else:
        noise = float(np.percentile(powers, 10))
        upper = powers[powers >= np.median(powers)]
        signal = float(upper.mean()) if upper.size else float(powers.mean())
    snr = _clamp(
        10.0 * math.log10(max(signal - noise, SILENCE_FLOOR_S) / max(noise, SILENCE_FLOOR_S)), -10.0, 60.0
    )
    cps = ratio = None
    if transcript is not None and transcript.strip():
        from audiobox.languages import pace_ratio, text_chars

        cps = text_chars(transcript) / max(speech_s, 0.25)
        ratio = pace_ratio(transcript, speech_s, language)
    return QualityMeasures(
        duration_s=duration,
        peak=float(np.max(np.abs(x))),
        rms_dbfs=_db(float(np.mean(x.astype(np.float64) ** 2))),
        loudness_lufs=integrated_loudness(x, sample_rate) if loudness else None,
        clipping_ratio=clipping_ratio(x),
        noise_floor_dbfs=_db(noise),
        speech_level_dbfs=_db(signal),
        snr_db=snr,
        speech_s=speech_s,
        silence_ratio=silence,
        chars_per_second=cps,
        rate_ratio=ratio,
    )


def quality_score(m: QualityMeasures) -> QualityScore:
    """The documented 0..1 score (see the module docstring)."""
    parts = {
        "snr": _clamp((m.snr_db - 10.0) / 25.0),
        "clipping": _clamp(1.0 - m.clipping_ratio / 0.002),
        "silence": _clamp(1.0 - (m.silence_ratio - 0.15) / 0.45),
    }
    if m.rate_ratio is not None and m.rate_ratio > 0:
        parts["rate"] = _clamp(1.0 - abs(math.log2(m.rate_ratio)))
    total = sum(SCORE_WEIGHTS[k] for k in parts)
    score = sum(SCORE_WEIGHTS[k] * v for k, v in parts.items()) / total
    return QualityScore(score=float(score), parts=parts)
