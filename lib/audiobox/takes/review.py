"""Judge the takes of a finished speak run: best.<format>, the scoreboard in takes.meta.json, word timings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from audiobox.progress import ProgressFn
from audiobox.takes.judge import JudgeOptions, Scoreboard, TakeJudge


@dataclass(frozen=True)
class ReviewOptions:
    """What to do with the takes (voice-synth speak --select-best / --qa / --align-words)."""

    select_best: bool = False  # write the best take that passed every hard check as best.<format>
    qa: bool = False  # judge and record the scoreboard, pick nothing
    align_words: bool = False  # word timestamps of the chosen take (best, or take 1)
    asr: str = "auto"  # whisper | sphinx | none | auto
    asr_model: str | None = None
    format: str = "wav"

    @property
    def wanted(self) -> bool:
        return self.select_best or self.qa or self.align_words


@dataclass
class Review:
    board: Scoreboard
    best_file: Path | None  # None: not asked for, or no take passed (see `failed`)
    words_file: Path | None
    failed: bool  # --select-best found no take that passed the hard checks


def review_speak_result(result, dirs, options: ReviewOptions, progress: ProgressFn | None = None) -> Review:
    """Judge `result.takes` (a speak.SpeakResult) and record the scoreboard in its takes.meta.json."""
    from audiobox.audio import load_audio, write_audio
    from audiobox.fsutil import atomic_write_json
    from audiobox.outputs import write_run_meta

    judge = TakeJudge(
        JudgeOptions(asr=options.asr, whisper_model=options.asr_model, cache_dir=dirs.stage("asr"))
    )
    reference = None
    voice = result.meta.get("voice") or {}
    if voice.get("slug") and voice.get("engine") != "custom_voice":
        from audiobox.voices import VoiceRegistry

        ref_wav = VoiceRegistry(dirs.voices).get(voice["slug"]).ref_wav
        reference = load_audio(ref_wav) if ref_wav and ref_wav.is_file() else None
    board = judge.judge(
        result.takes,
        result.meta["text"],
        result.meta.get("language", "auto"),
        reference=reference,
        align_words=options.align_words,
        progress=progress,
    )
    meta = dict(result.meta)
    meta["selection"] = {"mode": "select_best" if options.select_best else "qa", **board.to_dict()}
    best_file = words_file = None
    if options.select_best and board.best is not None:
        take = next(t for t in result.takes if t.index == board.best_index)
        best_file = write_audio(
            result.run_dir / f"best.{options.format}", take.samples, take.sample_rate, options.format
        )
        meta["selection"]["best_file"] = best_file.name
    if options.align_words:  # the chosen take; take 1 when nothing was chosen
        picked = board.best if options.select_best else None
        target = picked or min(board.takes, key=lambda t: t.index)
        words_file = result.run_dir / (("best" if picked else f"take_{target.index:02d}") + ".words.json")
        atomic_write_json(
            words_file,
            {
                "take": target.index,
                "asr": board.models.get("asr"),
                "text": result.meta["text"],
                "transcript": target.transcript,
                "words": target.words or [],
            },
        )
        meta["selection"]["words_file"] = words_file.name
    write_run_meta(result.run_dir, meta)
    result.meta = meta
    return Review(board, best_file, words_file, failed=options.select_best and board.best is None)
