"""Fault injection, part 5: bad input is refused before any model loads, with one stderr line.

The checks are the library's `speak.check_request`, the same one `batch --check` runs per item.
"""

from __future__ import annotations

import numpy as np
import pytest
from audiobox.cli.voice_clone import main as clone_main
from audiobox.cli.voice_synth import main
from audiobox.tts.prompts import ClonePrompt
from audiobox.voices import VoiceRegistry


@pytest.fixture()
def loads(monkeypatch) -> list[str]:
    """Every real model load (load_tts still runs): the checks must leave this empty."""
    import audiobox.tts.pool as pool

    refs: list[str] = []
    real = pool.load_tts

    def counted(ref, *args, **kwargs):
        refs.append(ref)
        return real(ref, *args, **kwargs)

    monkeypatch.setattr(pool, "load_tts", counted)
    return refs


def foreign_prompt_voice(cache, base_model: str) -> None:
    """A clone voice whose prompt was built by a model with another hidden size."""
    prompt = ClonePrompt(
        speaker_embedding=np.ones(8, np.float32),
        ref_code=np.zeros((3, 2), np.int64),
        ref_text="hi",
        x_vector_only=False,
        model={"ref": base_model, "tag": "base", "model_type": "base", "fingerprint": {"hidden_size": 4099}},
    )
    VoiceRegistry(cache / "voices").create(
        "foreign", {"engine": "clone_prompt"}, prompts=((prompt, None, None),)
    )


def bad_inputs(models, tmp_path):
    cv, base = str(models / "custom_voice"), str(models / "base")
    existing = tmp_path / "taken.wav"
    existing.write_bytes(b"keep me")
    return [
        (
            ["--speaker", "ryan", "--model", cv, "--text", "Hi.", "--language", "klingon"],
            "unknown language 'klingon'",
        ),
        (["--speaker", "nobody", "--model", cv, "--text", "Hi."], "unknown speaker 'nobody'"),
        (["--voice", "foreign", "--text", "Hi."], "cannot be used with"),
        (["--voice", "foreign", "--model", cv, "--text", "Hi."], "needs a voice clone (Base) model"),
        (
            ["--speaker", "ryan", "--model", cv, "--text", "Hi.", "--out-exact", str(existing)],
            "is not a directory",
        ),
        (
            ["--speaker", "ryan", "--model", base, "--text", "Hi."],
            "needs a built-in speakers (CustomVoice) model",
        ),
    ]


def test_bad_speak_input_is_refused_before_any_model_loads(tiny_models, tmp_path, loads, capsys, monkeypatch):
    monkeypatch.setenv("AUDIOBOX_WORK", str(tmp_path / "w"))
    cache = tmp_path / "cache"
    foreign_prompt_voice(cache, str(tiny_models / "base"))
    for args, message in bad_inputs(tiny_models, tmp_path):
        code = main(["speak", *args, "--cache", str(cache)])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and message in err, (args, err)
    assert loads == [] and (tmp_path / "taken.wav").read_bytes() == b"keep me"
    assert not (tmp_path / "w").exists()


def test_batch_check_uses_the_same_validation(tiny_models, tmp_path, loads, capsys):
    cache = tmp_path / "cache"
    foreign_prompt_voice(cache, str(tiny_models / "base"))
    script = tmp_path / "s.yaml"
    script.write_text(
        "items:\n"
        f"  - {{speaker: ryan, model: {tiny_models / 'custom_voice'}, text: Hi., language: klingon}}\n"
        "  - {voice: foreign, text: Hi.}\n"
    )
    assert main(["batch", str(script), "--check", "--cache", str(cache)]) == 2
    err = capsys.readouterr().err
    assert "unknown language 'klingon'" in err and "cannot be used with" in err and loads == []


def test_voice_clone_synth_refuses_empty_text_and_registers_nothing(tmp_path, loads, capsys):
    ref = tmp_path / "ref.wav"
    code = clone_main(
        [
            "synth",
            "--ref-audio",
            str(ref),
            "--text",
            "",
            "--voice-name",
            "newvoice",
            "--cache",
            str(tmp_path / "c"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "the text is empty" in err
    assert loads == [] and not VoiceRegistry(tmp_path / "c" / "voices").exists("newvoice")


CLONE_BAD_INPUTS = [
    (["--language", "klingon"], "unknown language 'klingon'"),
    (["--variants", "17"], "--variants must be between 1 and 16"),
    (["--temperature", "9"], "temperature"),
    (["--voice-name", "foreign"], "already exists"),
    (["--ref-start", "5", "--ref-end", "2"], "need 0 <= start < end"),
    (["--ref-start", "0", "--ref-end", "45"], "the chosen span is 45.0 s"),
    (["--ref-text", "Some words.", "--x-vector-only"], "--x-vector-only uses no transcript"),
    (["--ref-text", "   "], "--ref-text is empty"),
    (["--ref-language", "klingon"], "unknown language 'klingon'"),
    (["--tone", "Bad Tone"], "invalid tone"),
    (["--min-confidence", "2"], "--min-confidence must be between 0 and 1"),
]


def test_bad_voice_clone_input_is_refused_before_decoding_or_loading(tiny_models, tmp_path, loads, capsys):
    """The reference path does not exist: a check that ran after decoding would say so instead."""
    cache = tmp_path / "cache"
    foreign_prompt_voice(cache, str(tiny_models / "base"))
    missing = str(tmp_path / "not-decoded.wav")
    common = ["--ref-audio", missing, "--text", "Hi.", "--model", str(tiny_models / "base")]
    cases = [
        *CLONE_BAD_INPUTS,
        (["--model", str(tiny_models / "custom_voice")], "needs a voice clone (Base) model"),
    ]
    for args, message in cases:
        code = clone_main(["synth", *common, *args, "--cache", str(cache), "--out", str(tmp_path / "w")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and message in err, (args, err)
    code = clone_main(
        ["prepare-ref", "--ref-audio", missing, "--voice-name", "foreign", "--cache", str(cache)]
    )
    assert code == 2 and "already exists" in capsys.readouterr().err
    assert loads == [] and not (tmp_path / "w").exists() and not (cache / "refs").exists()


def test_bad_voice_register_input_is_refused_before_any_download_or_load(
    tiny_models, tmp_path, loads, capsys
):
    from audiobox.cli.voice_register import main as register_main

    cache = tmp_path / "cache"
    foreign_prompt_voice(cache, str(tiny_models / "base"))
    common = ["--audio", str(tmp_path / "not-decoded.wav"), "--voice-name", "newvoice"]
    common += ["--model", str(tiny_models / "base"), "--no-separate"]
    cases = [
        (["--language", "klingon"], "unknown language 'klingon'"),
        (["--model", str(tiny_models / "custom_voice")], "needs a voice clone (Base) model"),
        (["--voice-name", "foreign"], "already exists"),
        (["--ref-start", "5", "--ref-end", "2"], "need 0 <= start < end"),
        (["--ref-text", "Some words.", "--x-vector-only"], "--x-vector-only uses no transcript"),
        (["--text", "  "], "--text is empty"),
        (["--temperature", "9"], "temperature"),
        (["--start", "10", "--end", "5", "--x-vector-only"], "must be after --start"),
    ]
    for args, message in cases:
        code = register_main([*common, *args, "--cache", str(cache), "--out", str(tmp_path / "w")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and message in err, (args, err)
    assert loads == [] and not VoiceRegistry(cache / "voices").exists("newvoice")
    assert not (cache / "downloads").exists() and not (tmp_path / "w").exists()
