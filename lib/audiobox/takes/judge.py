"""The take judge: five measures per take, hard checks, a weighted score, a ranking (see audiobox.takes)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from audiobox.errors import UserError
from audiobox.languages import expected_seconds
from audiobox.progress import ProgressFn, Reporter
from audiobox.speakers import SpeakerEncoder
from audiobox.takes.backends import TakeTranscriber, load_transcriber
from audiobox.takes.text import CJK_LANGS, compare_text, resolve_language

SCOREBOARD_VERSION = 1
log = logging.getLogger(__name__)

# Weights of the soft score (sum 1). When a component cannot be measured (no reference audio, ASR
# disabled) the remaining weights are rescaled to sum to 1, so scores stay comparable within a run.
WEIGHTS: dict[str, float] = {
    "intelligibility": 0.40,  # the words are right: what a listener notices first
    "speaker": 0.25,  # it sounds like the chosen voice
    "acoustics": 0.20,  # no clipping, no dead air, clean and at a sane level
    "pacing": 0.15,  # neither rushed nor dragging for the language
}


@dataclass(frozen=True)
class Thresholds:
    """Where a measurement turns into a hard failure (never picked) or starts costing score."""

    max_error_rate: float = 0.5  # WER/CER above this: the words are not there
    max_missing_tail: float = 0.15  # share of the text's last words missing (at least 2 words / 3 chars)
    max_repeat_excess: int = 3  # extra repeated n-grams in the transcript beyond those in the text
    max_pace_ratio: float = 2.5  # speech this many times longer than the language pace needs
    min_pace_ratio: float = 0.4  # ... or this much shorter
    min_similarity: float = 0.60  # Resemblyzer cosine to the reference; other voices land ~0.4-0.55
    max_similarity_drop: float = 0.15  # below the best take of the run by more than this: voice drift
    max_clipping_ratio: float = 0.001  # share of samples at full scale
    max_leading_silence: float = 2.0  # seconds
    max_trailing_silence: float = 2.5  # seconds
    abrupt_end_db: float = -20.0  # last 30 ms louder than this, relative to the speech level,
    abrupt_end_over_noise_db: float = 10.0  # ... and this far above the noise floor: cut off mid-sound
    min_snr_db: float = 5.0  # below this the take is mostly noise


@dataclass
class Check:
    name: str
    passed: bool
    hard: bool
    value: float | None = None
    limit: float | None = None
    detail: str = ""


@dataclass
class TakeScore:
    """Everything measured on one take; `to_dict` is what takes.meta.json stores."""

    index: int
    duration_sec: float
    seed: int | None = None
    transcript: str | None = None
    error_rate: float | None = None
    error_metric: str | None = None  # "wer" or "cer"
    missing_tail: int | None = None  # text tokens missing after the last recognised one
    repeat_excess: int | None = None
    similarity: float | None = None
    pace_ratio: float | None = None
    speech_sec: float | None = None
    acoustics: dict = field(default_factory=dict)
    components: dict = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    score: float = 0.0
    passed: bool = True
    rank: int = 0
    words: list[dict] | None = None  # word timestamps from the ASR, when it gave them

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.hard and not c.passed]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["failures"] = [c.name for c in self.failures]
        data.pop("words", None)
        return data


@dataclass
class Scoreboard:
    text: str
    language: str
    metric: str
    weights: dict
    takes: list[TakeScore]
    best_index: int | None
    models: dict = field(default_factory=dict)
    version: int = SCOREBOARD_VERSION

    @property
    def best(self) -> TakeScore | None:
        return next((t for t in self.takes if t.index == self.best_index), None)

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "text": self.text,
            "language": self.language,
            "metric": self.metric,
            "weights": self.weights,
            "models": self.models,
            "best_index": self.best_index,
            "takes": [t.to_dict() for t in sorted(self.takes, key=lambda t: t.index)],
        }


# --------------------------------------------------------------------------------------------
# The judge


@dataclass(frozen=True)
class JudgeOptions:
    asr: str = "auto"  # whisper | sphinx | none | auto
    whisper_model: str | None = None  # None: audiobox.asr's default
    speaker: bool = True  # speaker similarity (needs Resemblyzer)
    device: str = "auto"  # for the ASR; the speaker encoder is small and runs on the CPU
    cache_dir: Any = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    weights: dict = field(default_factory=lambda: dict(WEIGHTS))


class TakeJudge:
    """Scores and ranks takes; the ASR and speaker encoder are loaded on first use, once."""

    def __init__(
        self,
        options: JudgeOptions | None = None,
        *,
        transcriber: TakeTranscriber | None = None,
        speaker_encoder: SpeakerEncoder | None = None,
    ) -> None:
        self.options = options or JudgeOptions()
        self._transcribers: dict[str, TakeTranscriber | None] = {}
        if transcriber is not None:
            self._transcribers["*"] = transcriber
        self._speaker = speaker_encoder
        self._ref_cache: dict[tuple, np.ndarray | None] = {}
        self._speaker_missing = False
        self.notes: list[str] = []
        self.load_counts = {"asr": 0, "speaker": 0}

    # -- models, loaded lazily and once ------------------------------------------------------
    def transcriber_for(self, language: str, progress: ProgressFn | None = None) -> TakeTranscriber | None:
        if "*" in self._transcribers:
            return self._transcribers["*"]
        kind = self.options.asr
        key = f"{kind}-english" if kind == "auto" and language == "english" else kind
        if key not in self._transcribers:
            self.load_counts["asr"] += 1
            self._transcribers[key] = load_transcriber(
                kind,
                language=language,
                whisper_model=self.options.whisper_model,
                device=self.options.device,
                cache_dir=self.options.cache_dir,
                progress=progress,
            )
        return self._transcribers[key]

    def speaker_encoder(self) -> SpeakerEncoder | None:
        """The encoder, or None (with a note) when disabled or Resemblyzer is not installed."""
        if not self.options.speaker or self._speaker_missing:
            return None
        if self._speaker is None:
            self.load_counts["speaker"] += 1
            try:
                self._speaker = SpeakerEncoder()
            except UserError as exc:
                self._speaker_missing = True
                self.notes.append(f"speaker similarity skipped: {exc}")
                log.warning("speaker similarity skipped: %s", exc)
                return None
        return self._speaker

    def _reference_embedding(self, reference) -> np.ndarray | None:
        samples = np.asarray(reference.samples, dtype=np.float32)
        key = (reference.sample_rate, samples.size, float(samples[:4096].sum()), float(samples[-4096:].sum()))
        if key not in self._ref_cache:
            encoder = self.speaker_encoder()
            self._ref_cache[key] = encoder.embed(samples, reference.sample_rate) if encoder else None
        return self._ref_cache[key]

    # -- judging --------------------------------------------------------------------------------
    def judge(
        self,
        takes: Sequence[Any],
        text: str,
        language: str | None = "auto",
        reference=None,
        align_words: bool = False,
        progress: ProgressFn | None = None,
    ) -> Scoreboard:
        """Score takes (objects with .samples and .sample_rate; optional .index, .seed) of one text.

        reference: an Audio of the voice (clone ref.wav); without one, similarity is measured
        against the other takes (leave-one-out mean), which still catches a take that drifts.
        `progress` gets a "check takes" stage (takes scored; the models load inside it).
        """
        if not text or not text.strip():
            raise UserError("cannot judge takes of an empty text")
        if not takes:
            raise UserError("no takes to judge")
        lang = resolve_language(text, language)
        limits = self.options.thresholds
        reporter = Reporter(progress)
        reporter.start("check takes", len(takes), "takes")
        transcriber = self.transcriber_for(lang, progress) if self.options.asr != "none" else None
        scores: list[TakeScore] = []
        embeddings: list[np.ndarray | None] = []
        encoder = self.speaker_encoder()
        for position, take in enumerate(takes):
            samples = np.asarray(take.samples, dtype=np.float32)
            sr = int(take.sample_rate)
            score = TakeScore(
                index=int(getattr(take, "index", position + 1) or position + 1),
                seed=getattr(take, "seed", None),
                duration_sec=round(len(samples) / sr, 3),
            )
            self._measure_acoustics(score, samples, sr, text, lang, limits)
            if transcriber is not None:
                hyp, words = transcriber.transcribe_take(samples, sr, lang)
                score.transcript = hyp
                if align_words:
                    score.words = [asdict(w) for w in words]
                self._measure_text(score, text, hyp, lang, limits)
            embeddings.append(encoder.embed(samples, sr) if encoder else None)
            scores.append(score)
            reporter.update("check takes", position + 1)
        ref_emb = self._reference_embedding(reference) if (encoder and reference is not None) else None
        self._measure_similarity(scores, embeddings, ref_emb, limits)
        metric = "cer" if lang in CJK_LANGS else "wer"
        board = Scoreboard(
            text=text,
            language=lang,
            metric=metric,
            weights=dict(self.options.weights),
            takes=scores,
            best_index=None,
            models={
                "asr": getattr(transcriber, "name", None),
                "speaker": encoder.name if encoder else None,
                "similarity_to": "reference" if ref_emb is not None else ("other takes" if encoder else None),
                "notes": list(self.notes),
            },
        )
        rank_takes(board)
        reporter.end("check takes", f"best: take {board.best_index}" if board.best_index else "none passed")
        return board

    def _measure_acoustics(self, score: TakeScore, samples, sr, text, lang, limits: Thresholds) -> None:
        acoustics = measure_acoustics(samples, sr)
        score.acoustics = acoustics
        speech = acoustics["speech_span_sec"]
        score.speech_sec = round(speech, 3)
        expected = max(0.3, expected_seconds(text, lang))
        score.pace_ratio = round(speech / expected, 3) if speech > 0 else 0.0
        add = score.checks.append
        add(
            Check(
                "clipping",
                acoustics["clipping_ratio"] <= limits.max_clipping_ratio,
                True,
                acoustics["clipping_ratio"],
                limits.max_clipping_ratio,
                "samples at full scale",
            )
        )
        add(
            Check(
                "leading_silence",
                acoustics["leading_silence_sec"] <= limits.max_leading_silence,
                True,
                acoustics["leading_silence_sec"],
                limits.max_leading_silence,
            )
        )
        add(
            Check(
                "trailing_silence",
                acoustics["trailing_silence_sec"] <= limits.max_trailing_silence,
                True,
                acoustics["trailing_silence_sec"],
                limits.max_trailing_silence,
            )
        )
        snr = acoustics.get("snr_db")
        add(Check("noise", snr is None or snr >= limits.min_snr_db, True, snr, limits.min_snr_db, "SNR dB"))
        add(
            Check(
                "too_long",
                score.pace_ratio <= limits.max_pace_ratio,
                True,
                score.pace_ratio,
                limits.max_pace_ratio,
                "speech time / time the text needs",
            )
        )
        add(
            Check(
                "too_short",
                score.pace_ratio >= limits.min_pace_ratio,
                True,
                score.pace_ratio,
                limits.min_pace_ratio,
                "speech time / time the text needs",
            )
        )
        end_db, over_noise = acoustics.get("end_level_db"), acoustics.get("end_over_noise_db")
        abrupt = (
            end_db is not None
            and end_db > limits.abrupt_end_db
            and over_noise > limits.abrupt_end_over_noise_db
        )
        add(
            Check(
                "abrupt_end",
                not abrupt,
                True,
                end_db,
                limits.abrupt_end_db,
                "level of the last 30 ms vs the speech, dB: cut off mid-sound",
            )
        )
        score.components["acoustics"] = _acoustic_score(acoustics)
        score.components["pacing"] = _clamp(
            1.0 - abs(math.log(max(score.pace_ratio, 1e-3))) / math.log(limits.max_pace_ratio)
        )

    def _measure_text(self, score: TakeScore, text, hyp, lang, limits: Thresholds) -> None:
        match = compare_text(text, hyp, lang)
        score.error_rate = round(match.error_rate, 4)
        score.error_metric = match.metric
        score.missing_tail = match.missing_tail
        score.repeat_excess = match.repeat_excess
        add = score.checks.append
        add(
            Check(
                "unintelligible",
                match.error_rate <= limits.max_error_rate,
                True,
                match.error_rate,
                limits.max_error_rate,
                match.metric,
            )
        )
        tail_limit = max(match.tail_limit, math.ceil(limits.max_missing_tail * match.ref_tokens))
        add(
            Check(
                "truncated",
                match.missing_tail < tail_limit,
                True,
                match.missing_tail,
                tail_limit,
                "text tokens missing after the last recognised one",
            )
        )
        add(
            Check(
                "runaway",
                match.repeat_excess < limits.max_repeat_excess,
                True,
                match.repeat_excess,
                limits.max_repeat_excess,
                "repeated n-grams not in the text",
            )
        )
        score.components["intelligibility"] = _clamp(1.0 - match.error_rate)

    def _measure_similarity(self, scores, embeddings, ref_emb, limits: Thresholds) -> None:
        usable = [e for e in embeddings if e is not None]
        for i, (score, emb) in enumerate(zip(scores, embeddings)):
            if emb is None:
                continue
            if ref_emb is not None:
                target = ref_emb
            else:
                others = [e for j, e in enumerate(embeddings) if j != i and e is not None]
                if len(others) < 2:  # two takes cannot tell which one drifted
                    continue
                target = np.mean(others, axis=0)
                target = target / (np.linalg.norm(target) + 1e-9)
            score.similarity = round(float(np.dot(emb, target)), 4)
        sims = [s.similarity for s in scores if s.similarity is not None]
        if not sims or len(usable) == 0:
            return
        best = max(sims)
        for score in scores:
            if score.similarity is None:
                continue
            if ref_emb is not None:
                score.checks.append(
                    Check(
                        "other_voice",
                        score.similarity >= limits.min_similarity,
                        True,
                        score.similarity,
                        limits.min_similarity,
                        "cosine to the reference",
                    )
                )
            score.checks.append(
                Check(
                    "voice_drift",
                    best - score.similarity <= limits.max_similarity_drop,
                    True,
                    round(best - score.similarity, 4),
                    limits.max_similarity_drop,
                    "below the most similar take",
                )
            )
            score.components["speaker"] = _clamp((score.similarity - 0.5) / 0.4)


def rank_takes(board: Scoreboard) -> None:
    """Weighted score over the components each take has; hard failures are ranked last, never best."""
    for take in board.takes:
        present = {k: w for k, w in board.weights.items() if k in take.components}
        total = sum(present.values()) or 1.0
        take.score = round(sum(take.components[k] * w for k, w in present.items()) / total, 4)
        take.passed = not take.failures
    order = sorted(board.takes, key=lambda t: (not t.passed, -t.score, t.index))
    for rank, take in enumerate(order, 1):
        take.rank = rank
    board.best_index = order[0].index if order and order[0].passed else None


# --------------------------------------------------------------------------------------------
# Acoustics


def measure_acoustics(samples: np.ndarray, sample_rate: int) -> dict:
    """Clipping, loudness and SNR from audiobox.quality; leading/trailing silence from Silero VAD spans.

    The VAD spans also tell audiobox.quality which frames are speech, which makes its SNR figure
    reliable; speech time (first span start to last span end) feeds the pace check.
    """
    from audiobox import quality
    from audiobox.vad import load_vad

    x = np.asarray(samples, dtype=np.float32)
    duration = len(x) / float(sample_rate)
    spans = load_vad().speech_spans(x, sample_rate)
    measures = quality.measure(x, sample_rate, speech_spans=spans)
    leading = spans[0].start if spans else duration
    trailing = max(0.0, duration - spans[-1].end) if spans else 0.0
    out = {
        "clipping_ratio": float(measures.clipping_ratio),
        "leading_silence_sec": float(leading),
        "trailing_silence_sec": float(trailing),
        "speech_span_sec": float(spans[-1].end - spans[0].start) if spans else 0.0,
        "loudness_lufs": measures.loudness_lufs,
        "peak": float(measures.peak),
        "snr_db": float(measures.snr_db),
    }
    out["end_level_db"], out["end_over_noise_db"] = _end_levels(
        x, sample_rate, out["trailing_silence_sec"], measures.noise_floor_dbfs
    )
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in out.items()}


def _end_levels(samples: np.ndarray, sr: int, trailing_silence: float, noise_floor_dbfs: float) -> tuple:
    """How loud the take's last 30 ms are: against its speech level (95th percentile of 20 ms frames)
    and against its noise floor, in dB.

    Speech decays into silence; a take cut off by its token budget (or a bad edit) stops mid-sound,
    loud against the speech and well above the noise floor (a noisy take ends loud too, but only at
    its noise floor). Takes with trailing silence ended naturally by definition.
    """
    x = np.asarray(samples, dtype=np.float32)
    frame = max(1, int(0.02 * sr))
    n = len(x) // frame
    if n < 5 or trailing_silence >= 0.1:
        return None, None
    rms = np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1)) + 1e-9
    speech_level = float(np.percentile(rms, 95))
    tail = x[-max(1, int(0.03 * sr)) :]
    tail_db = 20 * math.log10(float(np.sqrt(np.mean(tail**2))) + 1e-9)
    return round(tail_db - 20 * math.log10(speech_level), 2), round(tail_db - noise_floor_dbfs, 2)


def _acoustic_score(a: dict) -> float:
    clipping = _clamp(1.0 - a["clipping_ratio"] / 0.001)
    silence = _clamp(1.0 - max(0.0, a["leading_silence_sec"] - 0.3) / 1.5) * _clamp(
        1.0 - max(0.0, a["trailing_silence_sec"] - 0.5) / 2.0
    )
    snr = a.get("snr_db")
    noise = 1.0 if snr is None else _clamp((snr - 10.0) / 25.0)
    loud = a.get("loudness_lufs")
    level = 1.0 if loud is None else _clamp(1.0 - max(0.0, abs(loud + 20.0) - 8.0) / 15.0)
    return round(0.35 * clipping + 0.25 * silence + 0.25 * noise + 0.15 * level, 4)


def _clamp(x: float, low: float = 0.0, high: float = 1.0) -> float:
    return round(max(low, min(high, float(x))), 4)
