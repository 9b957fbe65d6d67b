"""The tiny Qwen3-TTS checkpoints load through the real qwen_tts code and generate audible noise.

Not covered here (the tiny models cannot tell): audio quality, real-checkpoint weight loading,
the 25 Hz tokenizer, GPU/bf16 numerics.
"""

from __future__ import annotations

import contextlib
import filecmp
import json
import sys

import numpy as np
import pytest

MAX_NEW_TOKENS = 9
MAX_SAMPLES = (MAX_NEW_TOKENS - 1) * 1920  # at most N-1 frames of 1920 samples (80 ms at 24 kHz)


@pytest.fixture(scope="module")
def qwen_model_cls():
    with contextlib.redirect_stdout(sys.stderr):  # import prints a flash-attn banner to stdout
        from qwen_tts import Qwen3TTSModel
    return Qwen3TTSModel


@pytest.fixture(scope="module")
def loaded(tiny_models, qwen_model_cls):
    cache = {}

    def load(kind):
        if kind not in cache:
            cache[kind] = qwen_model_cls.from_pretrained(str(tiny_models / kind))
        return cache[kind]

    return load


def _check_audio(wavs, sr, count=1):
    assert sr == 24000
    assert len(wavs) == count
    for wav in wavs:
        assert wav.dtype == np.float32 and wav.ndim == 1
        assert 0 < len(wav) <= MAX_SAMPLES + 1  # ICL's proportional reference cut may leave +1
        rms = float(np.sqrt(np.mean(wav**2)))
        assert 0.03 < rms < 0.3, rms  # calibrated noise, not silence


def test_layout_and_config(tiny_models):
    for kind, size in [("base", "0b6"), ("custom_voice", "0b6"), ("voice_design", "1b7")]:
        d = tiny_models / kind
        for name in [
            "config.json",
            "generation_config.json",
            "model.safetensors",
            "vocab.json",
            "merges.txt",
            "tokenizer_config.json",
            "speech_tokenizer/config.json",
            "speech_tokenizer/model.safetensors",
            "speech_tokenizer/preprocessor_config.json",
        ]:
            assert (d / name).is_file(), f"{kind}/{name}"
        config = json.loads((d / "config.json").read_text())
        assert config["tts_model_type"] == kind and config["tts_model_size"] == size
        talker = config["talker_config"]
        assert len([k for k in talker["codec_language_id"] if "dialect" not in k]) == 10
    speakers = json.loads((tiny_models / "custom_voice" / "config.json").read_text())["talker_config"]
    assert set(speakers["spk_id"]) == {
        "vivian",
        "serena",
        "uncle_fu",
        "dylan",
        "eric",
        "ryan",
        "aiden",
        "ono_anna",
        "sohee",
    }
    assert speakers["spk_is_dialect"]["dylan"] == "beijing_dialect"


def test_custom_voice_generates_deterministically(loaded):
    import torch

    model = loaded("custom_voice")
    assert "vivian" in model.get_supported_speakers()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        wavs, sr = model.generate_custom_voice(
            "Hello world", speaker="Vivian", language="English", max_new_tokens=MAX_NEW_TOKENS
        )
        _check_audio(wavs, sr)
        runs.append(wavs[0])
    assert np.array_equal(runs[0], runs[1])
    wavs, sr = model.generate_custom_voice(
        ["你好", "Hi"],
        speaker=["Dylan", "Ryan"],
        language="auto",
        max_new_tokens=MAX_NEW_TOKENS,
        do_sample=False,
        subtalker_dosample=False,
    )
    _check_audio(wavs, sr, count=2)


def test_voice_design_generates(loaded):
    model = loaded("voice_design")
    assert model.get_supported_speakers() == []
    wavs, sr = model.generate_voice_design(
        "Hello", instruct="a calm, low voice", language="English", max_new_tokens=MAX_NEW_TOKENS
    )
    _check_audio(wavs, sr)


def test_base_voice_clone(loaded):
    model = loaded("base")
    t = np.arange(24000 * 2) / 24000
    ref = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    icl = model.create_voice_clone_prompt((ref, 24000), ref_text="A plain sine tone.")
    assert icl[0].icl_mode and icl[0].ref_code.shape[1] == 16
    xvec = model.create_voice_clone_prompt((ref, 24000), x_vector_only_mode=True)
    assert xvec[0].ref_code is None
    wavs, sr = model.generate_voice_clone(
        "Hello", language="English", voice_clone_prompt=icl, max_new_tokens=MAX_NEW_TOKENS
    )
    _check_audio(wavs, sr)
    wavs, sr = model.generate_voice_clone(
        ["One", "Two"], voice_clone_prompt=xvec, max_new_tokens=MAX_NEW_TOKENS
    )
    _check_audio(wavs, sr, count=2)


def test_rebuild_is_byte_identical(tiny_models, tmp_path):
    from make_tiny_models import build_tiny_models

    build_tiny_models(tmp_path, only=["custom_voice"])
    cmp = filecmp.dircmp(tiny_models / "custom_voice", tmp_path / "custom_voice")

    def differences(c):
        found = c.left_only + c.right_only + c.diff_files + c.funny_files
        for sub in c.subdirs.values():
            found += differences(sub)
        return found

    assert differences(cmp) == []  # same-size files with other mtimes are compared by content
    # and once more explicitly by content for the files that matter most
    for rel in ["model.safetensors", "speech_tokenizer/model.safetensors", "config.json"]:
        assert filecmp.cmp(tiny_models / "custom_voice" / rel, tmp_path / "custom_voice" / rel, shallow=False)


def test_what_qwen_tts_prints_becomes_a_logged_warning(tiny_models, capsys, caplog):
    """qwen_tts print()s a warning for a reference beyond full scale: inside our calls it reaches
    logging (audiobox.tts.qwen_tts), not stdout (--json) and not raw stderr."""
    from audiobox.audio import Audio
    from audiobox.tts.pool import ModelPool
    from audiobox.tts.runtime import RuntimeOptions

    synth = ModelPool(RuntimeOptions(device="cpu")).synthesizer(str(tiny_models / "base"), "base")
    capsys.readouterr()
    t = np.arange(24000) / 24000
    too_loud = Audio((1.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 24000)
    with caplog.at_level("WARNING", logger="audiobox.tts.qwen_tts"):
        synth.build_clone_prompt(too_loud, None, x_vector_only=True)
    out, err = capsys.readouterr()
    assert out == "" and "[WARNING]" not in err  # no raw print (an app shows it as 'warning: Max value ...')
    lines = [r.getMessage() for r in caplog.records if r.name == "audiobox.tts.qwen_tts"]
    assert any(line.startswith("Max value of input waveform signal is") for line in lines), lines
