"""audiobox.refprep: candidate planning, selection on a recording with known speech, cache, gate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from audiobox import refprep
from audiobox.asr import load_asr
from audiobox.audio import load_audio
from audiobox.errors import UserError
from audiobox.languages import pace_ratio
from audiobox.quality import integrated_loudness
from audiobox.refprep import RefOptions, prepare_reference


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    from clone_audio import shared_clone_audio

    return shared_clone_audio(tmp_path_factory)


@pytest.fixture(scope="module")
def whisper(tiny_models):
    return str(tiny_models / "whisper")


class CountingLoader:
    """asr_loader that records whether a transcript had to be computed."""

    def __init__(self, model: str):
        self.model = model
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return load_asr(self.model, device="cpu")


def prepare(path, root, loader=None, **options):
    return prepare_reference(path, root, RefOptions(**options), asr_loader=loader)


# -- planning (pure) -------------------------------------------------------------------------------------


def test_windows_cut_only_at_phrase_pauses_and_fit_3_to_12_s():
    # phrases of 1.8 s separated by 0.35 s pauses, with short in-phrase gaps (0.12 s) that must never be cut
    spans, t = [], 0.5
    for _ in range(20):
        spans += [(t, t + 0.8), (t + 0.92, t + 1.8)]
        t += 1.8 + 0.35
    units = refprep.speech_units(spans)
    assert len(units) == 20 and all(u.end - u.start == pytest.approx(1.8) for u in units)
    windows = refprep.plan_windows(units, total_s=t + 1)
    assert len(windows) >= 10
    for u in units[:-5]:  # every start has a window near 8 s
        assert min(abs((e - s) - 8.0) for s, e, _ in windows if s == pytest.approx(u.start - 0.12)) < 1.0
    inside = [(a + 0.05, b - 0.05) for a, b in [(u.start, u.end) for u in units]]
    for start, end, _speech in windows:
        assert 3.0 <= end - start <= 12.0 + 2 * refprep.EDGE_PAD_S
        for a, b in inside:
            assert not a < start < b and not a < end < b  # never inside a phrase
    cands = [
        refprep.Candidate(
            index=0,
            start=s,
            end=e,
            speech_s=sp,
            quality={},
            quality_score=1.0,
            duration_fit=1.0,
            prescore=1.0,
        )
        for s, e, sp in windows
    ]
    kept = refprep.pick_diverse(cands, limit=10)
    assert len(kept) >= 4  # several per long speech run
    for a, b in zip(kept, kept[1:]):
        assert refprep._overlap((a.start, a.end), (b.start, b.end)) <= 0.3


def test_a_long_run_without_pauses_is_split_at_its_quietest_point():
    sr = 24000
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.2, 20 * sr).astype(np.float32)
    x[int(7.0 * sr) : int(7.06 * sr)] *= 0.01  # one quiet 60 ms valley at 7.0 s
    units = refprep.split_long_units([refprep.Unit(0.0, 20.0, 20.0)], x, sr)
    assert units[0].end == pytest.approx(7.03, abs=0.03)
    assert all(u.end - u.start <= 12.0 for u in units) and units[-1].end == 20.0


def test_coverage_and_rate_checks():
    from audiobox.asr import Word

    words = [Word(0.2, 0.6, "hello", 0.9), Word(0.7, 1.2, "there", 0.9)]
    cov, gaps = refprep.coverage_of(words, [(0.2, 1.2), (2.0, 4.0)])
    assert cov == pytest.approx(1.0 / 3.0) and gaps == [[2.0, 4.0]]
    assert refprep.coverage_of(words, [(0.2, 1.2)])[0] == pytest.approx(1.0)
    assert pace_ratio("x" * 70, 5.0, "english") == pytest.approx(1.0)  # audiobox.languages: the one pace
    assert refprep.duration_fit(8.0) == 1.0 and refprep.duration_fit(3.0) == 0.0


# -- the pipeline on real speech -----------------------------------------------------------------------


def test_selection_on_a_recording_with_known_speech(audio, whisper, tmp_path):
    loader = CountingLoader(whisper)
    ref = prepare(audio.session, tmp_path, loader, asr_model=whisper, force_bad_ref=True)
    clean_start, clean_end = audio.sections["clean"]
    # the winner is in the clean section (the others are noisy or clipped)
    assert clean_start - 0.3 <= ref.start and ref.end <= clean_end + 0.3
    assert ref.chosen_by == "auto" and ref.transcript_source == "whisper" and ref.transcript
    assert len(ref.candidates) >= 3
    for cand in ref.candidates:  # never cut inside a sentence
        for a, b in audio.sentence_spans:
            assert not a + 0.05 < cand.start < b - 0.05 and not a + 0.05 < cand.end < b - 0.05
        assert 3.0 <= cand.duration <= 12.5 and cand.transcript is not None
    noisy = [c for c in ref.candidates if c.end <= audio.sections["noisy"][1] + 0.5]
    clipped = [c for c in ref.candidates if c.end > audio.sections["clipped"][0] + 1.0]
    assert noisy and noisy[0].quality["snr_db"] < 10 and noisy[0].score < ref.score
    assert clipped and clipped[0].quality["clipping_ratio"] > 0.001 and clipped[0].score < ref.score
    # saved: candidate scores and the prepared result
    saved = json.loads(next(ref.cache_dir.glob("candidates-*.json")).read_text())
    assert saved["best"] == ref.chosen_index and len(saved["candidates"]) == len(ref.candidates)
    assert all("score" in c and "parts" in c for c in saved["candidates"])
    assert (ref.cache_dir / "source-24k.wav").is_file() and ref.segment_path.is_file()
    # full 24 kHz bandwidth: the share of energy above 8.5 kHz is what the source has at that span
    # (a 16 kHz round trip or an 8 kHz low-pass, as the old toolbox did, leaves ~nothing there)
    seg = ref.audio
    assert seg.sample_rate == 24000

    def high_share(x):
        spectrum = np.abs(np.fft.rfft(x)) ** 2
        freqs = np.fft.rfftfreq(x.size, 1 / 24000)
        return spectrum[freqs > 8500].sum() / spectrum.sum()

    original = load_audio(audio.session, start=ref.start, end=ref.end).samples
    assert high_share(seg.samples) == pytest.approx(high_share(original), rel=0.2)
    from audiobox.audio import resample

    old_way = resample(resample(original, 24000, 16000), 16000, 24000)
    assert high_share(old_way) < 0.2 * high_share(seg.samples)
    # loudness-normalised to -20 LUFS (or held at the peak ceiling)
    loud = integrated_loudness(seg.samples, 24000)
    assert loud == pytest.approx(-20.0, abs=0.5) or np.abs(seg.samples).max() >= 0.88
    assert loader.calls == 1  # one whisper load for all candidates

    # a second run reuses every stage and never loads whisper
    again_loader = CountingLoader(whisper)
    again = prepare(audio.session, tmp_path, again_loader, asr_model=whisper, force_bad_ref=True)
    assert again_loader.calls == 0
    assert again.reused == {"decode": True, "speech": True, "candidates": True, "segment": True}
    assert (again.start, again.end, again.transcript) == (ref.start, ref.end, ref.transcript)

    # --force redoes it
    forced = prepare(
        audio.session, tmp_path, CountingLoader(whisper), asr_model=whisper, force_bad_ref=True, force=True
    )
    assert forced.reused["decode"] is False and forced.reused["candidates"] is False


def test_bounds_always_take_effect_and_change_the_cache_key(audio, whisper, tmp_path):
    loader = CountingLoader(whisper)
    first = prepare(
        audio.session, tmp_path, loader, asr_model=whisper, force_bad_ref=True, ref_start=8.2, ref_end=15.5
    )
    assert (first.start, first.end, first.chosen_by) == (8.2, 15.5, "bounds")
    assert first.audio.duration == pytest.approx(7.3, abs=0.01)
    moved = prepare(
        audio.session, tmp_path, loader, asr_model=whisper, force_bad_ref=True, ref_start=11.7, ref_end=18.4
    )
    assert (moved.start, moved.end) == (11.7, 18.4)
    assert (
        moved.reused["decode"] is True
        and moved.reused["candidates"] is False
        and moved.reused["segment"] is False
    )
    assert moved.segment_path != first.segment_path
    same = prepare(
        audio.session, tmp_path, loader, asr_model=whisper, force_bad_ref=True, ref_start=8.2, ref_end=15.5
    )
    assert same.reused["candidates"] is True and same.segment_path == first.segment_path
    with pytest.raises(UserError, match="only .* s of speech between"):
        prepare(audio.session, tmp_path, loader, asr_model=whisper, ref_start=6.9, ref_end=8.5)
    with pytest.raises(UserError, match="past the end"):
        prepare(audio.session, tmp_path, loader, asr_model=whisper, ref_start=500, ref_end=510)
    with pytest.raises(UserError, match="start < end"):
        prepare(audio.session, tmp_path, loader, asr_model=whisper, ref_start=9, ref_end=4)


def test_reference_language_is_passed_to_whisper(audio, whisper, tmp_path):
    ref = prepare(
        audio.clean,
        tmp_path,
        CountingLoader(whisper),
        asr_model=whisper,
        force_bad_ref=True,
        language="german",
    )
    assert ref.detected_language == "de" and ref.language == "german"
    cached = [json.loads(p.read_text()) for p in (ref.cache_dir / "transcripts").glob("*.json")]
    assert cached and all(t["language"] == "de" for t in cached)


def test_quality_gate_stops_a_low_confidence_transcript(audio, whisper, tmp_path):
    with pytest.raises(
        UserError, match=r"rejected: transcript confidence 0\.0\d is below 0\.37.*--ref-text.*--force-bad-ref"
    ):
        prepare(audio.clean, tmp_path, CountingLoader(whisper), asr_model=whisper)
    kept = prepare(audio.clean, tmp_path, CountingLoader(whisper), asr_model=whisper, force_bad_ref=True)
    assert kept.forced and any("confidence" in w for w in kept.warnings)


def test_ref_text_needs_no_whisper_but_must_match_the_audio(audio, tmp_path):
    from clone_audio import CLEAN_TEXT

    loader = CountingLoader("unused")
    ref = prepare(audio.clean, tmp_path, loader, ref_text=CLEAN_TEXT, language="english")
    assert loader.calls == 0 and ref.transcript == CLEAN_TEXT and ref.transcript_source == "provided"
    assert ref.chosen_by == "ref-text" and ref.start < 0.35 and ref.end > audio.clean_duration - 0.5
    with pytest.raises(UserError, match="characters for .* s of speech .* does not match"):
        prepare(audio.clean, tmp_path, loader, ref_text="Hi.")
    with pytest.raises(UserError, match="must describe the whole reference"):
        prepare(audio.session, tmp_path, loader, ref_text=CLEAN_TEXT)
    ok = prepare(audio.session, tmp_path, loader, ref_text=CLEAN_TEXT, ref_start=8.3, ref_end=15.5)
    assert ok.transcript == CLEAN_TEXT and loader.calls == 0


def test_x_vector_mode_runs_without_transcript_or_whisper(audio, tmp_path):
    loader = CountingLoader("unused")
    ref = prepare(audio.session, tmp_path, loader, x_vector_only=True)
    assert loader.calls == 0 and ref.transcript is None and ref.transcript_source == "none"
    assert all(c.transcript is None and "confidence" not in c.parts for c in ref.candidates)
    assert audio.sections["clean"][0] - 0.3 <= ref.start < ref.end <= audio.sections["clean"][1] + 0.3
    with pytest.raises(UserError, match="--x-vector-only uses no transcript"):
        prepare(audio.session, tmp_path, loader, x_vector_only=True, ref_text="words")


def test_chooser_picks_another_candidate(audio, tmp_path):
    seen = {}

    def chooser(cands, best):
        seen["n"], seen["best"] = len(cands), best
        return next(c.index for c in cands if c.index != best)

    ref = prepare(audio.session, tmp_path, x_vector_only=True, chooser=chooser)
    assert seen["n"] >= 2 and ref.chosen_by == "user" and ref.chosen_index != seen["best"]


def test_video_container_input(audio, tmp_path):
    if audio.video is None:
        pytest.skip("ffmpeg missing")
    ref = prepare(audio.video, tmp_path, x_vector_only=True)
    assert ref.audio.sample_rate == 24000 and 3.0 <= ref.duration <= 12.5


@pytest.mark.parametrize(
    "name, message",
    [
        ("short", r"only 0\.\d s of speech in the recording; a clone reference needs at least 3 s"),
        ("silent", "is silent"),
        ("not_audio", "cannot decode"),
        ("empty", "audio file is empty"),
    ],
)
def test_bad_inputs_raise_one_clear_line(audio, tmp_path, name, message):
    with pytest.raises(UserError, match=message) as info:
        prepare(getattr(audio, name), tmp_path, x_vector_only=True)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        prepare(tmp_path / "nope.wav", tmp_path, x_vector_only=True)


def test_verify_ref_text_against_whisper(audio, whisper, tmp_path):
    from clone_audio import CLEAN_TEXT

    loader = CountingLoader(whisper)
    # the tiny random whisper is never confident: the text is kept, with a warning that it was not verified
    ref = prepare(audio.clean, tmp_path, loader, asr_model=whisper, ref_text=CLEAN_TEXT, verify_ref_text=True)
    assert loader.calls == 1 and ref.transcript == CLEAN_TEXT
    assert ref.candidates[0].verification["verdict"] == "unsure" and any(
        "not verified" in w for w in ref.warnings
    )
    # trusting it anyway (threshold 0): its gibberish contradicts the text, so the run stops
    with pytest.raises(UserError, match="whisper hears different words"):
        prepare(
            audio.clean,
            tmp_path,
            loader,
            asr_model=whisper,
            ref_text=CLEAN_TEXT,
            verify_ref_text=True,
            min_confidence=0.0,
        )
    heard = {"text": "A calm voice reads the evening news, to a quiet room!", "avg_logprob": -0.2}
    assert (
        refprep.verify_words("a calm voice reads the evening news to a quiet room", heard)["verdict"]
        == "match"
    )
    assert refprep.verify_words("something else entirely", heard)["verdict"] == "mismatch"
