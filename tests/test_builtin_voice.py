"""audiobox.builtin_voice as a library call: checked against the model's config.json, no weights loaded."""

from __future__ import annotations

import pytest
from audiobox.builtin_voice import BuiltinRequest, register_builtin
from audiobox.errors import UserError
from audiobox.paths import Dirs


def test_same_speaker_adds_a_tone_another_needs_replace(tiny_models, tmp_path):
    dirs = Dirs(cache=tmp_path / "cache", work=tmp_path / "work")
    model = str(tiny_models / "custom_voice")
    first = register_builtin(
        BuiltinRequest("narrator", "Aiden", model=model, instruct_default_style="calm"), dirs
    )
    assert first.speaker == "aiden" and not first.updated
    assert first.voice.custom_voice["instruct_default"] and first.voice.tones() == {}
    again = BuiltinRequest("narrator", "AIDEN", model=model, tone="excited", tone_instruct="Very excited!")
    second = register_builtin(again, dirs)
    assert second.updated and list(second.voice.tones()) == ["excited"]
    assert second.voice.custom_voice["instruct_default"] == first.voice.custom_voice["instruct_default"]
    with pytest.raises(UserError, match="already exists with speaker 'aiden'"):
        register_builtin(BuiltinRequest("narrator", "ryan", model=model), dirs)
    replaced = register_builtin(BuiltinRequest("narrator", "ryan", model=model, replace=True), dirs)
    assert replaced.speaker == "ryan" and replaced.voice.tones() == {}


@pytest.mark.parametrize(
    "change,match",
    [
        ({"speaker": "nobody"}, "nobody"),
        ({"tone": "happy"}, "--tone needs"),
        ({"language_default": "klingon"}, "unknown language"),
        ({"voice_name": "Not OK"}, "invalid voice name"),
    ],
)
def test_bad_requests_are_refused_before_anything_is_written(tiny_models, tmp_path, change, match):
    dirs = Dirs(cache=tmp_path / "cache", work=tmp_path / "work")
    fields = {"voice_name": "v", "speaker": "ryan", "model": str(tiny_models / "custom_voice")} | change
    with pytest.raises(UserError, match=match):
        register_builtin(BuiltinRequest(**fields), dirs)
    assert not (dirs.voices / "v").exists()
