"""audiobox.split: clips inside known speech, ranking, trim, content-keyed caches, in-process Demucs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf
from audiobox.errors import UserError
from audiobox.separate import SeparatorOptions
from audiobox.split import SplitOptions, VoiceSplitter, candidate_clips, select_windows
from audiobox.vad import Span

TOL = 0.2  # VAD padding + onset error


class Recorder:
    """Collects the splitter's progress events (audiobox.progress); `notes`: each stage's last end message."""

    def __init__(self):
        self.events, self.notes = [], {}

    def __call__(self, event):
        self.events.append(event)
        if event.phase == "end":
            self.notes[event.stage] = event.message


_TRACKS: dict = {}


def _speech_track(mix):
    if mix.speech_only not in _TRACKS:
        _TRACKS[mix.speech_only] = sf.read(mix.speech_only, dtype="float32")
    return _TRACKS[mix.speech_only]


def _splitter(tmp_path, progress=None):
    return VoiceSplitter(
        tmp_path / "cache" / "split", tmp_path / "cache" / "downloads", progress or Recorder()
    )


def _inside_speech(start, end, mix, max_pause=0.8):
    """The clip lies within one run of sentences (pauses <= max_pause) and starts/ends at sentence edges."""
    spans = mix.speech_spans
    runs, cur = [], list(spans[0])
    for s in spans[1:]:
        if s[0] - cur[1] <= max_pause:
            cur[1] = s[1]
        else:
            runs.append(tuple(cur))
            cur = list(s)
    runs.append(tuple(cur))
    assert any(r[0] - TOL <= start and end <= r[1] + TOL for r in runs), (start, end, runs)
    # edges fall in pauses of the speech track (a sentence edge or a comma pause), never mid-word
    voice, rate = _speech_track(mix)
    level = float(np.sqrt(np.mean(voice[np.abs(voice) > 0] ** 2)))
    for a, b in ((start - 0.04, start + 0.03), (end - 0.03, end + 0.04)):
        seg = voice[max(0, int(a * rate)) : int(b * rate)]
        assert seg.size == 0 or float(np.sqrt(np.mean(seg**2))) < 0.12 * level, f"edge at {a:.2f} is mid-word"
    for a, b in mix.silence_spans + [mix.music_spans[0], mix.music_spans[2]]:  # pure silence / music only
        assert min(end, b) - max(start, a) <= TOL, (start, end, a, b)


def test_clips_inside_known_speech_and_ranked(speech_mix, tmp_path):
    opts = SplitOptions(audio=speech_mix.path, clips=3, length=6, separate=False, out_dir=tmp_path / "out")
    result = _splitter(tmp_path).run(opts)
    assert len(result.clips) == 3 and result.reference is not None
    for clip in result.clips + [result.reference]:
        _inside_speech(clip.start, clip.end, speech_mix)
    for clip in result.clips:
        data, rate = sf.read(clip.path)
        info = sf.info(clip.path)
        assert rate == 24000 and data.ndim == 1 and info.subtype == "PCM_16"
        assert abs(len(data) / rate - clip.duration) < 0.01
        assert 3.0 <= clip.duration <= 9.0
    spans = sorted((c.start, c.end) for c in result.clips)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), "clips overlap"
    scores = [c.score for c in result.clips]
    assert scores == sorted(scores, reverse=True)
    # the clean block (no music underneath) ranks first
    clean = speech_mix.blocks[1]
    assert clean[0] - TOL <= result.clips[0].start and result.reference.start >= clean[0] - TOL
    assert "snr_db" in result.clips[0].measures and "quality_version" in result.clips[0].measures
    manifest = (tmp_path / "out" / "clips.json").read_text()
    assert "reference.wav" in manifest and sf.info(tmp_path / "out" / "reference.wav").samplerate == 24000


def test_trim_and_times_in_source_coordinates(speech_mix, tmp_path):
    opts = SplitOptions(audio=speech_mix.path, start=25.0, end=45.0, clips=2, length=6, separate=False)
    result = _splitter(tmp_path).run(opts)
    assert result.clips and all(25.0 <= c.start and c.end <= 45.0 for c in result.clips)
    for clip in result.clips:
        _inside_speech(clip.start, clip.end, speech_mix)
    assert result.stats["audio_s"] == pytest.approx(20.0, abs=0.05)


def test_caches_are_keyed_by_content(speech_mix, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    shutil.copy(speech_mix.path, a / "audio.wav")
    shutil.copy(speech_mix.clean_speech, b / "audio.wav")  # same name, different content
    rec = Recorder()
    splitter = _splitter(tmp_path, rec)
    r1 = splitter.run(SplitOptions(audio=a / "audio.wav", clips=1, length=6, separate=False))
    r2 = splitter.run(SplitOptions(audio=b / "audio.wav", clips=1, length=6, separate=False))
    assert r1.cache_dir != r2.cache_dir and r1.raw_spans != r2.raw_spans
    assert rec.notes["vad"] != "cached"
    shutil.copy(speech_mix.path, tmp_path / "renamed.wav")  # same content, other name
    r3 = splitter.run(SplitOptions(audio=tmp_path / "renamed.wav", clips=1, length=6, separate=False))
    assert r3.cache_dir == r1.cache_dir and rec.notes["vad"] == "cached" and r3.raw_spans == r1.raw_spans
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.name.startswith(".") and p.is_file()]


def test_demucs_runs_only_on_speech_dense_windows(speech_mix, tiny_demucs, tmp_path, caplog):
    rec = Recorder()
    splitter = _splitter(tmp_path, rec)
    opts = SplitOptions(
        audio=speech_mix.path,
        clips=1,
        length=6,
        windows=1,
        window_s=12,
        separator=SeparatorOptions(repo=tiny_demucs, threads=1),
        out_dir=tmp_path / "out",
    )
    first = splitter.run(opts)
    stats = first.stats
    assert stats["separator"]["model"] == "htdemucs" and stats["windows"] == 1
    assert 0 < stats["separated_s"] <= 12.6 and stats["separated_share"] < 0.3
    vocals = list((first.cache_dir / "vocals").glob("*.wav"))
    assert len(vocals) == 1 and sf.info(vocals[0]).samplerate == 24000
    # random weights destroy the speech: the window falls back to the mix, and says so
    assert any("lost the speech" in w for w in first.warnings)
    assert any("lost the speech" in r.message for r in caplog.records if r.name == "audiobox.split")  # logged
    separate = [e for e in rec.events if e.stage == "separate"]
    assert separate[0].phase == "start" and separate[-1].phase == "end" and separate[0].unit == "s"
    assert all(0 < e.done <= e.total for e in separate if e.phase == "update")
    assert first.clips and not first.clips[0].from_vocals
    _inside_speech(first.clips[0].start, first.clips[0].end, speech_mix)
    # second run: separated stem comes from the cache, same model object
    second = splitter.run(opts)
    assert second.timings["separate_s"] < first.timings["separate_s"]
    assert [c.to_json() for c in second.clips] == [c.to_json() for c in first.clips]


def test_bad_inputs(speech_mix, tmp_path):
    splitter = _splitter(tmp_path)
    with pytest.raises(UserError, match="no speech"):
        splitter.run(SplitOptions(audio=speech_mix.music_only, separate=False))
    with pytest.raises(UserError, match="past the end"):
        splitter.run(SplitOptions(audio=speech_mix.path, start=10, end=500, separate=False))
    with pytest.raises(UserError, match="no speech"):  # a trim that holds only the music intro
        splitter.run(SplitOptions(audio=speech_mix.path, start=0, end=2.5, separate=False))
    with pytest.raises(UserError, match="Demucs model"):
        splitter.run(SplitOptions(audio=speech_mix.path, separator=SeparatorOptions(repo=tmp_path)))


def test_window_and_candidate_selection():
    spans = [Span(0, 4), Span(4.5, 8), Span(20, 22), Span(40, 44), Span(44.3, 49), Span(49.2, 53)]
    wins = select_windows(spans, window_s=15, count=2, min_density=0.4, total_s=60)
    assert [(round(w.start, 2), round(w.end, 2)) for w in wins] == [(0.0, 8.25), (39.75, 53.25)]
    cands = candidate_clips(spans, lo=5, hi=10, target=8, max_pause_s=0.8)
    assert Span(0, 8) in cands and Span(40, 49) in cands
    assert all(5 <= c.duration <= 10 for c in cands)
    assert not any(c.start < 20 < c.end for c in cands)  # never across a long pause
    assert candidate_clips([Span(0, 2)], lo=5, hi=10, target=8, max_pause_s=0.8) == []
    assert candidate_clips([Span(0, 2)], 5, 10, 8, 0.8, allow_short=True) == [Span(0, 2)]
