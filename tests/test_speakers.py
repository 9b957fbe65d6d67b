"""audiobox.speakers on real voices (Piper joe, espeak-ng ann/ben) with the truth of who spoke when."""

from __future__ import annotations

import numpy as np
import pytest
from audiobox.audio import load_audio
from audiobox.errors import UserError
from audiobox.speakers import (
    HOP_FRAMES,
    WINDOW_FRAMES,
    SpeakerChoice,
    SpeakerMap,
    SpeakerSettings,
    WindowEmbeddings,
    change_points,
    choose_speaker,
    find_speakers,
)
from audiobox.split import RAW_VAD
from audiobox.vad import VAD_SAMPLE_RATE, Span, load_vad


@pytest.fixture(scope="module")
def maps(conversation, speaker_encoder):
    """The speaker map of each test recording, from the same speech map voice-split makes."""
    out = {}
    for name, conv in conversation.items():
        audio = load_audio(conv.path, VAD_SAMPLE_RATE).samples
        spans = load_vad().speech_spans(audio, VAD_SAMPLE_RATE, settings=RAW_VAD)
        out[name] = find_speakers(audio, spans, speaker_encoder)
    return out


def _voice_of(conv, smap: SpeakerMap, speaker_id: int) -> str:
    """The true voice that talks most inside a speaker's regions."""
    talk: dict[str, float] = {}
    for r in smap.regions(speaker_id):
        for who, s in conv.talk_time(r.start, r.end).items():
            talk[who] = talk.get(who, 0.0) + s
    return max(talk, key=talk.get)


@pytest.mark.parametrize("name", ["interview", "monologue", "three"])
def test_finds_the_number_of_speakers_and_clean_regions(name, conversation, maps):
    conv, smap = conversation[name], maps[name]
    assert len(smap.speakers) == len(conv.speakers())
    assert [s.id for s in smap.speakers] == list(range(1, len(smap.speakers) + 1))
    assert all(a.speech_s >= b.speech_s for a, b in zip(smap.speakers, smap.speakers[1:]))
    voices = {s.id: _voice_of(conv, smap, s.id) for s in smap.speakers}
    assert sorted(voices.values()) == sorted(conv.speakers()), voices  # one speaker per voice
    for s in smap.speakers:
        assert smap.usable_s(s.id) >= 4.0
        for region in smap.regions(s.id):
            talk = conv.talk_time(region.start, region.end)
            others = sum(v for who, v in talk.items() if who != voices[s.id])
            assert others <= 0.05 * region.duration, (s.id, region, talk)
            assert talk.get(voices[s.id], 0.0) >= 0.5 * region.duration, (s.id, region, talk)


def test_overlap_and_interjection_are_never_usable(conversation, maps):
    conv, smap = conversation["interview"], maps["interview"]
    (overlap,) = conv.overlaps
    yes = next(seg for seg in conv.segments if seg[1] - seg[0] < 1.0)  # ann's one-word "Yes."
    for s in smap.speakers:
        for region in smap.regions(s.id):
            assert region.end <= overlap[0] or region.start >= overlap[1], region
            assert region.end <= yes[0] or region.start >= yes[1], region


def test_choose_auto_rank_and_match(conversation, maps, speaker_encoder):
    conv, smap = conversation["interview"], maps["interview"]
    assert choose_speaker(smap, SpeakerChoice.parse("auto")).speaker.id == 1
    assert choose_speaker(smap, SpeakerChoice.parse("2")).speaker.id == 2
    with pytest.raises(UserError, match=r"--speaker 3: only 2 speakers found \(speaker 1: .* turns"):
        choose_speaker(smap, SpeakerChoice.parse("3"))
    sample_dir = conv.path.parent
    for voice in ("joe", "ann"):
        sample = sample_dir / f"{voice}_sample.wav"
        audio = load_audio(sample, VAD_SAMPLE_RATE).samples
        spans = load_vad().speech_spans(audio, VAD_SAMPLE_RATE)
        emb = speaker_encoder.embed_speech(audio, VAD_SAMPLE_RATE, spans)
        chosen = choose_speaker(smap, SpeakerChoice.parse("auto", match=sample), emb)
        assert _voice_of(conv, smap, chosen.speaker.id) == voice
        assert chosen.match_similarity[chosen.speaker.id] > 0.75 > min(chosen.match_similarity.values())
        assert sample.name in chosen.reason


def test_choice_parsing():
    assert SpeakerChoice.parse("AUTO") == SpeakerChoice()
    assert SpeakerChoice.parse(" 2 ").rank == 2
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(UserError, match="--speaker must be"):
            SpeakerChoice.parse(bad)
    with pytest.raises(UserError, match="not both"):
        SpeakerChoice.parse("2", match="x.wav")


def test_map_survives_json_and_refuses_other_settings(maps):
    import json

    smap = maps["interview"]
    data = json.loads(json.dumps(smap.to_json()))
    back = SpeakerMap.from_json(data, smap.settings)
    assert [s.to_json() for s in back.speakers] == [s.to_json() for s in smap.speakers]
    assert back.regions(1) == smap.regions(1) and back.turns == smap.turns
    assert np.allclose(back.speakers[0].centroid, smap.speakers[0].centroid, atol=1e-5)
    with pytest.raises(ValueError):
        SpeakerMap.from_json(data, SpeakerSettings(cluster_threshold=0.2))


def test_change_points_peak_once_per_change():
    """One span, voice a then voice b from 6.4 s: one change, where the windows either side disagree."""
    n = 14
    offsets = np.arange(n) * HOP_FRAMES
    starts = offsets * 0.01
    a, b = np.eye(4, dtype=np.float32)[:2]
    window_s = WINDOW_FRAMES * 0.01
    emb = np.stack(
        [a if s + window_s <= 6.4 + 1e-6 else b if s >= 6.4 - 1e-6 else (a + b) / np.sqrt(2) for s in starts]
    )
    windows = WindowEmbeddings(
        np.stack([starts, starts + window_s], axis=1), emb, np.zeros(n, np.int64), offsets
    )
    assert change_points(windows, 0, 0.35) == [pytest.approx(6.4)]
    assert change_points(windows, 1, 0.35) == []  # another span: no windows
    no_change = WindowEmbeddings(windows.times, np.tile(a, (n, 1)), windows.span_index, offsets)
    assert change_points(no_change, 0, 0.35) == []


def test_single_short_span_gives_one_window(speaker_encoder):
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 0.05, VAD_SAMPLE_RATE * 3).astype(np.float32)
    windows = speaker_encoder.embed_windows(audio, [Span(0.5, 1.2), Span(1.5, 3.0)])
    assert list(windows.span_index) == [0, 1]
    assert np.allclose(np.linalg.norm(windows.embeddings, axis=1), 1.0, atol=1e-4)
    assert windows.times[0][1] == pytest.approx(1.2)


def test_mel_frames_match_resemblyzers_own():
    """The numpy front end gives the encoder the numbers it was trained on (librosa's)."""
    from audiobox.speakers import _import_resemblyzer, mel_frames

    wav = np.random.default_rng(3).normal(0, 0.1, 16000 + 77).astype(np.float32)
    theirs = _import_resemblyzer().audio.wav_to_mel_spectrogram(wav)
    ours = mel_frames(wav)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 1e-5 * np.abs(theirs).max()


def test_settings_are_checked():
    with pytest.raises(UserError, match="between 0 and 1"):
        SpeakerSettings(cluster_threshold=1.5).validate()
    with pytest.raises(UserError, match="negative"):
        SpeakerSettings(min_turn_s=-1).validate()
