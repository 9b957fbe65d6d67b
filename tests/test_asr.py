"""audiobox.asr on the tiny random faster-whisper model: the real CTranslate2 decoding path."""

from __future__ import annotations

import time

import numpy as np
import pytest
from audiobox import asr
from audiobox.audio import Audio, load_audio
from audiobox.errors import UserError


@pytest.fixture(scope="module")
def whisper_dir(tiny_models):
    return tiny_models / "whisper"


@pytest.fixture(scope="module")
def transcriber(whisper_dir):
    return asr.load_asr(str(whisper_dir), device="cpu")


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    from clone_audio import shared_clone_audio

    return load_audio(shared_clone_audio(tmp_path_factory).clean)


def test_model_is_loaded_once_per_process(whisper_dir, transcriber):
    assert asr.load_asr(str(whisper_dir), device="cpu") is transcriber
    assert asr.load_transcriber(str(whisper_dir), device="cpu") is transcriber  # the name audiobox.takes uses
    assert transcriber.multilingual and transcriber.device == "cpu" and transcriber.compute_type == "int8"
    assert transcriber.fingerprint()["asr_version"] == asr.ASR_VERSION


def test_transcribe_detects_or_takes_the_language_and_reports_low_confidence(transcriber, speech):
    detected = transcriber.transcribe(speech, temperature=0.0)
    assert detected.text and detected.language and 0.0 <= detected.language_prob <= 1.0
    # random weights: the per-token probability is tiny, which is exactly what the quality gate must catch
    assert detected.avg_logprob < -3 and detected.confidence < 0.05
    assert detected.duration == pytest.approx(speech.duration, abs=0.01)
    german = transcriber.transcribe(speech, language="german", temperature=0.0)
    assert german.language == "de" and german.language_prob == 1.0  # passed through, not guessed
    assert transcriber.transcribe(speech, language="fr", temperature=0.0).language == "fr"


def test_word_timestamps_stay_inside_the_clip_and_round_trip(transcriber, speech):
    result = transcriber.transcribe(speech, language="english", word_timestamps=True, temperature=0.0)
    assert result.words and result.segments
    for w in result.words:
        assert 0.0 <= w.start <= w.end <= result.duration + 1e-6 and w.word and 0.0 <= w.probability <= 1.0
    again = asr.Transcript.from_dict(result.to_dict())
    assert again == result and result.to_dict()["confidence"] == pytest.approx(result.confidence, abs=1e-4)


def test_token_cap_keeps_a_confused_model_short(transcriber):
    noise = Audio(np.random.default_rng(0).normal(0, 0.1, 16000 * 2).astype(np.float32), 16000)
    started = time.perf_counter()
    result = transcriber.transcribe(noise)  # default temperature fallback
    assert time.perf_counter() - started < 20
    assert sum(s.tokens for s in result.segments) <= asr.TOKENS_PER_SECOND_CAP * 2 + 16 + 8
    empty = transcriber.transcribe(Audio(np.zeros(0, np.float32), 16000))
    assert empty.text == "" and empty.confidence == 0.0


def test_missing_models_fail_fast_with_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(UserError, match="not in the cache .*HF_HUB_OFFLINE"):
        asr.load_asr("tiny", cache_dir=tmp_path / "asr")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(UserError, match="cannot be reached"):
        asr.load_asr("base", cache_dir=tmp_path / "asr")
    assert time.perf_counter() - started < 10
    with pytest.raises(UserError, match="unknown whisper model 'smal'"):
        asr.load_asr("smal")
    (tmp_path / "notamodel").mkdir()
    with pytest.raises(UserError, match="no model.bin"):
        asr.load_asr(str(tmp_path / "notamodel"))
    with pytest.raises(UserError, match="does not exist"):
        asr.load_asr(str(tmp_path / "missing"))
