"""audiobox.register called as a library (no argparse, no console): the stages, the clip-choice
callback, the progress events and the checks that run before any work. Tiny real models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
from audiobox.errors import UserError
from audiobox.paths import Dirs
from audiobox.refprep import RefOptions
from audiobox.register import STAGES, RegisterRequest, check_request, register
from audiobox.speak import SpeakRequest
from audiobox.split import SplitOptions, use_clip_as_reference
from audiobox.tts.pool import ModelPool
from audiobox.voices import VoiceRegistry


@pytest.fixture
def dirs(tmp_path) -> Dirs:
    return Dirs(cache=tmp_path / "cache", work=tmp_path / "work")


def _split_options(speech_mix) -> SplitOptions:
    return SplitOptions(
        audio=speech_mix.path, clips=3, length=6, separate=False, find_speakers=False, window_s=12, windows=1
    )


def test_register_picks_the_clip_the_callback_chose_and_reports_each_stage(speech_mix, tiny_models, dirs):
    chosen = []

    def pick_second(split) -> None:
        chosen.append([c.start for c in split.clips])
        use_clip_as_reference(split, 2)

    events = []
    request = RegisterRequest(
        voice_name="lib-voice",
        split=_split_options(speech_mix),
        ref=RefOptions(x_vector_only=True),
        speech=SpeakRequest(text="Hello there.", knobs={"max_new_tokens": 6}, seed=5),
        display_name="Library voice",
        model=str(tiny_models / "base"),
        choose_reference=pick_second,
    )
    result = register(request, dirs, ModelPool(progress=events.append), events.append)

    assert len(chosen) == 1 and len(chosen[0]) >= 2  # called once, with the split's clips
    second = result.split.clips[1]
    assert (result.split.reference.start, result.split.reference.end) == (second.start, second.end)
    voice = VoiceRegistry(dirs.voices).get("lib-voice")
    assert voice.ready and voice.data["display_name"] == "Library voice"
    assert voice.data["source"]["clip"] == [round(second.start, 3), round(second.end, 3)]
    assert abs(sf.info(voice.ref_wav).duration - result.reference.audio.duration) < 0.01
    saved = json.loads((dirs.work / "lib-voice" / "clips.json").read_text())  # the pick is on disk
    assert saved["reference"]["chosen_by"] == "user" and saved["reference"]["start"] == round(second.start, 3)

    # every stage of the run is a start/end pair of progress events, in order, and timed
    ours = [(e.stage, e.phase) for e in events if e.stage in STAGES and e.phase != "update"]
    assert ours == [(s, p) for s in STAGES for p in ("start", "end")]
    assert list(result.stage_seconds) == list(STAGES) and all(v >= 0 for v in result.stage_seconds.values())
    assert {"load", "synthesize"} <= {e.stage for e in events}  # the library's own stages pass through

    take = result.spoken.files[0]
    assert take.is_file() and result.spoken.meta["app"] == "voice-register"
    assert result.spoken.meta["voice"]["id"] == "lib-voice" and result.spoken.meta["seed"] == 5
    data = json.loads(json.dumps(result.to_dict()))  # --json's shape, plain JSON
    assert data["voice"] == "lib-voice" and data["prompt_id"] == result.prompt_id
    assert (
        data["takes"] == [str(take)]
        and data["seed"] == 5
        and data["clips_dir"] == str(dirs.work / "lib-voice")
    )
    assert "audio" not in data["reference"] and data["reference"]["x_vector_only"] is True


@pytest.mark.parametrize(
    "change,match",
    [
        ({"voice_name": "Not OK"}, "invalid voice name"),
        ({"ref": RefOptions(ref_start=1.0, ref_end=5.0), "choose_reference": print}, "use one"),
        ({"speech": SpeakRequest(text="   ")}, "--text is empty"),
        ({"speech": SpeakRequest(text="Hi.", language="klingon")}, "unknown language"),
        ({"split": SplitOptions(audio=Path("x.wav"), clips=-1)}, "--clips"),
        ({"ref": RefOptions(asr_model="/nonexistent/whisper")}, "whisper"),
    ],
)
def test_check_request_refuses_before_any_work(speech_mix, tiny_models, dirs, change, match):
    fields = {
        "voice_name": "ok",
        "split": _split_options(speech_mix),
        "ref": RefOptions(x_vector_only=True),
        "model": str(tiny_models / "base"),
    } | change
    request = RegisterRequest(**fields)
    with pytest.raises(UserError, match=match):
        check_request(request, dirs)
    with pytest.raises(UserError, match=match):
        register(request, dirs, pool=None)  # never reaches a model: the pool is not even needed
    assert not (dirs.cache / "split").exists() and not dirs.work.exists()


def test_split_voice_registers_the_picked_clip_without_a_model(speech_mix, dirs):
    """voice-split's library call: clips into <work>/<voice>, the callback's pick registered (no prompt)."""
    from audiobox.register import SplitRequest, check_split_request, split_voice

    events = []
    request = SplitRequest(
        _split_options(speech_mix),
        "clip-voice",
        choose_reference=lambda split: use_clip_as_reference(split, 2),
    )
    done = split_voice(request, dirs, events.append)
    second = done.split.clips[1]
    assert done.split.out_dir == dirs.work / "clip-voice" and done.voice.slug == "clip-voice"
    assert done.voice.ref["source_start"] == round(second.start, 3) and not done.voice.prompts
    assert {"vad", "export"} <= {e.stage for e in events}
    unnamed = SplitRequest(_split_options(speech_mix), choose_reference=print)
    with pytest.raises(UserError, match="add --voice-name"):
        check_split_request(unnamed, dirs)
    anonymous = split_voice(SplitRequest(_split_options(speech_mix)), dirs)
    assert anonymous.voice is None and anonymous.split.out_dir == dirs.work / anonymous.split.source.source_id
