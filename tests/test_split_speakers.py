"""voice-split keeps one speaker: clips, the reference and the registered voice come from the chosen
voice only (ground truth: how tests/fixtures/conversation.py assembled the recordings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
from audiobox.cli.voice_register import main as register_main
from audiobox.cli.voice_split import main as split_main
from audiobox.errors import UserError
from audiobox.separate import SeparatorOptions
from audiobox.speakers import SpeakerChoice, SpeakerSettings
from audiobox.split import SplitOptions, VoiceSplitter
from audiobox.voices import VoiceRegistry


def run(main, argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """One cache for the module, so each recording's speaker map is computed once."""
    return tmp_path_factory.mktemp("speaker_cache")


@pytest.fixture(scope="module")
def splitter(shared_cache):
    return VoiceSplitter(shared_cache / "split", shared_cache / "downloads")


def _voice(conv, start: float, end: float) -> tuple[str, float]:
    """The voice heard most in [start, end] and the share of the clip where any other voice is heard."""
    talk = conv.talk_time(start, end)
    main_voice = max(talk, key=talk.get)
    others = sum(v for who, v in talk.items() if who != main_voice)
    return main_voice, others / (end - start)


def _split(splitter, conv, tmp_path, choice: SpeakerChoice, **kw):
    opts = SplitOptions(
        audio=conv.path, clips=3, length=5, separate=False, speaker=choice, out_dir=tmp_path / "clips", **kw
    )
    return splitter.run(opts)


@pytest.mark.parametrize(
    "choice,voice",
    [
        (SpeakerChoice(), "joe"),  # auto: joe talks most
        (SpeakerChoice(rank=2), "ann"),
        ("ann_sample.wav", "ann"),  # --match
    ],
)
def test_clips_and_reference_come_from_the_chosen_speaker(conversation, splitter, tmp_path, choice, voice):
    conv = conversation["interview"]
    if isinstance(choice, str):
        choice = SpeakerChoice(match=conv.path.parent / choice)
    result = _split(splitter, conv, tmp_path, choice)
    assert len(result.speakers.map.speakers) == 2
    chosen = result.speakers.chosen.speaker.id
    assert result.clips and result.reference is not None
    for clip in [*result.clips, result.reference]:
        who, others = _voice(conv, clip.start, clip.end)
        assert who == voice and others <= 0.05, (clip.start, clip.end, conv.talk_time(clip.start, clip.end))
        assert clip.speaker == chosen and clip.speaker_similarity > 0.8
    manifest = json.loads((tmp_path / "clips" / "clips.json").read_text())
    assert manifest["speakers"]["chosen"] == chosen and len(manifest["speakers"]["found"]) == 2
    assert all(c["speaker"] == chosen and c["speaker_similarity"] > 0.8 for c in manifest["clips"])
    assert manifest["reference"]["speaker"] == chosen
    assert "speakers_s" in result.timings


def test_three_voices_and_the_tiny_demucs_path(conversation, splitter, tiny_demucs, tmp_path):
    conv = conversation["three"]
    opts = SplitOptions(
        audio=conv.path,
        clips=1,
        length=4,
        speaker=SpeakerChoice(rank=3),
        separator=SeparatorOptions(repo=tiny_demucs),
        out_dir=tmp_path / "clips",
    )
    result = splitter.run(opts)
    assert len(result.speakers.map.speakers) == 3
    voices = {_voice(conv, c.start, c.end) for c in [*result.clips, result.reference]}
    assert {v for v, _ in voices} == {"ben"} and max(o for _, o in voices) <= 0.05


def test_single_speaker_gives_one_speaker_and_the_same_clips(speech_mix, splitter, tmp_path):
    def clips(find: bool):
        opts = SplitOptions(audio=speech_mix.path, clips=2, length=6, separate=False, find_speakers=find)
        result = splitter.run(opts)
        return result, [(c.start, c.end, c.score) for c in [*result.clips, result.reference]]

    with_stage, found = clips(True)
    without, plain = clips(False)
    assert len(with_stage.speakers.map.speakers) == 1 and with_stage.speakers.regions is None
    assert without.speakers is None and found == plain


def test_without_resemblyzer_auto_keeps_every_voice_and_a_choice_fails(conversation, splitter, monkeypatch):
    import audiobox.split

    monkeypatch.setattr(audiobox.split, "encoder_available", lambda: False)
    conv = conversation["interview"]
    with pytest.raises(UserError, match=r"--speaker N and --match: telling speakers apart needs Resemblyzer"):
        splitter.prepare(SplitOptions(audio=conv.path, separate=False, speaker=SpeakerChoice(rank=2)))
    result = splitter.run(SplitOptions(audio=conv.path, clips=1, length=5, separate=False))
    assert result.speakers is None and result.clips[0].speaker is None
    assert any("every voice kept" in w and "py-audio-box[qa]" in w for w in result.warnings)


def test_too_little_clean_speech_names_the_speakers(conversation, splitter, tmp_path):
    conv = conversation["interview"]
    with pytest.raises(
        UserError, match=r"speaker 2 \(rank 2\) has too little clean speech.*Speakers found: speaker 1"
    ):
        _split(
            splitter, conv, tmp_path, SpeakerChoice(rank=2), speaker_settings=SpeakerSettings(min_turn_s=5.0)
        )


def test_list_speakers_cli_writes_a_sample_of_each(conversation, shared_cache, tmp_path, capsys):
    conv = conversation["interview"]
    dirs = ["--cache", str(shared_cache), "--out", str(tmp_path / "out")]
    assert run(split_main, ["--audio", str(conv.path), "--list-speakers", "--json", *dirs]) == 0
    data = json.loads(capsys.readouterr().out)["speakers"]
    assert [s["id"] for s in data["found"]] == [1, 2] and data["chosen"] == 1
    for entry in data["found"]:
        info = sf.info(entry["sample"])
        assert 2.0 <= info.duration <= 8.0 and info.samplerate == 24000
        assert entry["turns"] >= 3 and entry["speech_s"] > 15
        start, end = entry["sample_span"]
        assert abs(end - start - info.duration) < 0.01
        assert _voice(conv, start, end)[1] <= 0.05  # one voice in each sample
    samples = [_voice(conv, *e["sample_span"])[0] for e in data["found"]]
    assert sorted(samples) == ["ann", "joe"]
    assert not (tmp_path / "out" / "interview" / "clips.json").exists()  # it stops after listing

    match = ["--match", str(conv.path.parent / "ann_sample.wav")]
    assert (
        run(register_main, ["--audio", str(conv.path), "--voice-name", "x", "--list-speakers", *match, *dirs])
        == 0
    )
    out = capsys.readouterr().out
    assert "2 speakers in interview.wav" in out and "<- chosen: closest to ann_sample.wav" in out
    assert out.count("listen: ") == 2


@pytest.mark.parametrize(
    "args,match",
    [
        (["--speaker", "two"], "--speaker must be 'auto' or a rank"),
        (["--speaker", "2", "--match", "x.wav"], "not both"),
        (["--match", "missing.wav"], "--match: no such file"),
        (["--speaker", "3"], "--speaker 3: only 2 speakers found (speaker 1:"),
    ],
)
def test_bad_speaker_choices_are_one_line(conversation, shared_cache, tmp_path, capsys, args, match):
    argv = ["--audio", str(conversation["interview"].path), "--no-separate", *args]
    rc = run(split_main, [*argv, "--cache", str(shared_cache), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and match in err and "Traceback" not in err


def test_match_sample_without_speech_fails_before_any_work(conversation, speech_mix, tmp_path, capsys):
    argv = ["--audio", str(conversation["interview"].path), "--match", str(speech_mix.music_only)]
    rc = run(split_main, [*argv, "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "music_only.wav: only" in err and "seconds of the wanted voice" in err
    assert not (tmp_path / "cache" / "split").exists()


def test_registered_voice_is_the_chosen_speaker(conversation, shared_cache, tmp_path, capsys):
    conv = conversation["interview"]
    argv = ["--audio", str(conv.path), "--no-separate", "--clips", "1", "--length", "5", "--speaker", "2"]
    rc = run(
        split_main,
        [*argv, "--voice-name", "ann", "--json", "--cache", str(shared_cache), "--out", str(tmp_path)],
    )
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    voice = VoiceRegistry(shared_cache / "voices").get("ann")
    ref = voice.data["ref"]
    assert _voice(conv, ref["source_start"], ref["source_end"])[0] == "ann"
    assert voice.data["source"]["speaker"]["id"] == 2 == data["speakers"]["chosen"]
