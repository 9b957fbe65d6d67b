"""audiobox.vad: the sequence-ONNX Silero detector against known speech positions."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from audiobox.audio import load_audio
from audiobox.vad import Span, VadSettings, load_vad, merge_spans, preserve_torch_threads, spans_from_probs


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


@pytest.fixture(scope="module")
def mix16(speech_mix):
    return load_audio(speech_mix.path, 16000).samples


def test_finds_every_sentence_and_nothing_in_music_or_silence(speech_mix, mix16):
    spans = load_vad().speech_spans(mix16, 16000, min_silence_s=0.3)
    truth = speech_mix.speech_spans
    # every sentence is mostly covered
    for s in truth:
        covered = sum(_overlap(s, (p.start, p.end)) for p in spans)
        assert covered >= 0.85 * (s[1] - s[0]), (s, spans)
    # nothing is detected in the music-only intro/interlude or the silences
    merged = merge_spans([Span(*s) for s in truth], 1.0)
    for p in spans:
        inside = sum(_overlap((p.start, p.end), (m.start - 0.15, m.end + 0.15)) for m in merged)
        assert inside >= 0.9 * p.duration, p
    # onsets within 100 ms of a true sentence start
    starts = [s[0] for s in truth]
    for p in spans:
        if any(abs(p.start - st) < 1.0 for st in starts):
            assert min(abs(p.start - st) for st in starts) < 0.12


def test_torch_free_and_identical_to_the_package(mix16):
    import subprocess

    code = (
        "import sys; sys.path.insert(0, 'lib'); import numpy as np; from audiobox.vad import load_vad; "
        "load_vad().speech_spans(np.zeros(16000, np.float32), 16000); print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=__import__("pathlib").Path(__file__).resolve().parents[1],
    )
    assert out.stdout.strip() == "False"

    import torch

    threads = torch.get_num_threads()
    with preserve_torch_threads():
        from silero_vad import get_speech_timestamps_sequence, load_silero_vad
    assert torch.get_num_threads() == threads  # silero's import set 1; we put it back
    theirs = get_speech_timestamps_sequence(
        mix16, load_silero_vad(sequence=True), return_seconds=True, time_resolution=3
    )
    ours = load_vad().speech_spans(mix16, 16000)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert abs(a.start - b["start"]) <= 0.002 and abs(a.end - b["end"]) <= 0.002


def test_other_rates_are_resampled(speech_mix, mix16):
    det = load_vad()
    a = det.speech_spans(mix16, 16000)
    b = det.speech_spans(load_audio(speech_mix.path).samples, 24000)
    assert abs(len(a) - len(b)) <= 1
    assert abs(sum(s.duration for s in a) - sum(s.duration for s in b)) < 1.0


def test_hysteresis_padding_and_edges():
    frame = 512 / 16000
    probs = np.array([0.0] * 10 + [0.9] * 30 + [0.2] * 2 + [0.9] * 30 + [0.0] * 20 + [0.9] * 3 + [0.0] * 10)
    spans = spans_from_probs(
        probs, VadSettings(min_silence_s=0.1, min_speech_s=0.25, pad_s=0.03), len(probs) * frame
    )
    # the 2-frame dip (64 ms) is shorter than min_silence: one span; the 3-frame blip is too short
    assert len(spans) == 1
    assert spans[0].start == pytest.approx(10 * frame - 0.03, abs=1e-3)
    assert spans[0].end == pytest.approx(72 * frame + 0.03, abs=1e-3)
    assert load_vad().speech_spans(np.zeros(0, np.float32), 16000) == []
    assert merge_spans([Span(0, 1), Span(1.2, 2), Span(3, 4)], 0.5) == [Span(0, 2), Span(3, 4)]
