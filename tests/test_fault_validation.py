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
