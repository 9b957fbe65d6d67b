"""Reference processing for voice cloning: from any recording to one clean, transcribed segment.

Pipeline (every stage cached under ``<cache>/refs/<sha256 of the source file>/``):

1. **decode**: ffmpeg/soundfile to mono at 24 kHz straight from the source rate (soxr), so the
   reference keeps its full 12 kHz bandwidth (the old toolbox went through 16 kHz). Stored as
   ``source-24k.wav``.
2. **speech**: Silero VAD spans over the whole file (``speech-<settings>.json``).
3. **candidates**: stretches of 3-12 s aiming near 8 s. Cuts are only made in pauses of at least
   ``CUT_GAP_S`` between VAD spans (phrase boundaries), so a candidate never starts or ends
   inside a word; a single run of speech longer than 12 s without such a pause is split at its
   quietest 30 ms frame (between syllables at worst). Every run of whole phrases that fits is a
   window, so a long speech run yields several candidates; a cheap pre-score (quality + closeness
   to 8 s) keeps the best ``max_candidates`` that overlap each other by at most 30 %.
4. **scoring**: each kept candidate is measured (`audiobox.quality`), transcribed by faster-whisper
   with the reference language passed through (word timestamps, deterministic decoding), and
   scored (see ``score_candidate``). The scores and the winner are saved; a chooser callback
   (``--interactive``) may pick another.
5. **gate**: the winner's transcript must be confident (``min_confidence``), must cover all of the
   segment's speech (word timestamps against the VAD spans) and must have a plausible length for
   the speech duration; otherwise the run stops with the reason, unless ``force_bad_ref``.
   A ``--ref-text`` gets the length check (that is how a transcript of something else shows), and
   with ``verify_ref_text`` whisper's words too (only a confident whisper can reject it).
6. **segment**: the chosen span cut from the 24 kHz decode and loudness-normalised to
   ``TARGET_LUFS`` with one linear gain (peak kept below -1 dBFS): ``ref-<key>.wav``.

`--ref-start/--ref-end` replace steps 3-4 with exactly that span (the bounds are part of every
cache key, so changing them always recomputes). With ``ref_text`` and no bounds, the segment is the
whole stretch of speech in the file (it must then be at most ``MAX_REF_TEXT_SPAN_S`` long).
`x_vector_only` needs no transcript: whisper is not run at all.

The short silence that stops Qwen3-TTS from echoing the end of the reference is appended by
``Synthesizer.build_clone_prompt`` (audiobox.tts.synth), right before the prompt is built.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from audiobox.audio import TTS_SAMPLE_RATE, Audio, load_audio, write_audio
from audiobox.errors import UserError
from audiobox.fsutil import atomic_write_json, sha256_file, sha256_json
from audiobox.languages import pace_ratio, text_chars
from audiobox.progress import ProgressFn, Reporter
from audiobox.quality import QUALITY_VERSION, frame_powers, loudness_gain, measure, quality_score
from audiobox.stagecache import cached_file, cached_json

SCORING_VERSION = 1  # bump when candidate planning or scoring changes: cached selections recompute
DECODE_VERSION = 1
MIN_REF_S = 3.0
MAX_REF_S = 12.0
TARGET_REF_S = 8.0
MAX_MANUAL_S = 30.0  # longest span accepted from --ref-start/--ref-end
MAX_REF_TEXT_SPAN_S = 20.0  # longest speech stretch a --ref-text without bounds may describe
CUT_GAP_S = 0.25  # pauses at least this long are phrase boundaries: the only places we cut
MAX_INNER_GAP_S = 1.0  # a candidate may contain pauses up to this long
EDGE_PAD_S = 0.12  # silence kept before the first and after the last word
TARGET_LUFS = -20.0
PEAK_CEILING = 0.89  # -1 dBFS
DEFAULT_MAX_CANDIDATES = 5
MAX_MEASURED_WINDOWS = 400  # pre-scored windows at most (~5 ms each)
DEFAULT_MIN_CONFIDENCE = 0.37  # geometric-mean token probability = exp(avg_logprob) >= exp(-1)
MIN_COVERAGE = 0.8
RATE_RANGE = (0.4, 2.5)  # transcript chars per speech second / the language's typical pace
SILENT_PEAK = 1e-4


@dataclass
class RefOptions:
    """What the user asked for. Every field that changes the result is part of a cache key."""

    ref_start: float | None = None
    ref_end: float | None = None
    ref_text: str | None = None
    language: str = "auto"  # Qwen language name or "auto"
    x_vector_only: bool = False
    asr_model: str = "small"
    asr_device: str = "auto"
    max_candidates: int = DEFAULT_MAX_CANDIDATES
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    force: bool = False  # redo every stage
    force_bad_ref: bool = False  # keep going when the gate fails
    verify_ref_text: bool = False  # also run whisper on a --ref-text segment and compare the words
    chooser: Callable[[list[Candidate], int], int] | None = None  # --interactive

    @property
    def uses_asr(self) -> bool:
        return not self.x_vector_only and not self.ref_text

    def check(self) -> None:
        """What is wrong without looking at the audio: refused before any decoding or model load
        (voice-clone, voice-register and `prepare_reference` alike)."""
        from audiobox.languages import normalize_language

        if self.ref_text is not None and not self.ref_text.strip():
            raise UserError("--ref-text is empty")
        if self.ref_text and self.x_vector_only:
            raise UserError("--x-vector-only uses no transcript: drop --ref-text (or drop --x-vector-only)")
        start, end = self.ref_start or 0.0, self.ref_end
        if start < 0 or (end is not None and end <= start):
            shown = f"{start:g} .. {'end' if end is None else f'{end:g}'}"
            raise UserError(f"--ref-start/--ref-end: need 0 <= start < end (got {shown})")
        if end is not None and end - start > MAX_MANUAL_S:
            raise UserError(_span_too_long(end - start))
        if not 0.0 <= self.min_confidence <= 1.0:
            raise UserError("--min-confidence must be between 0 and 1")
        normalize_language(self.language)

    def shifted(self, offset: float) -> RefOptions:
        """The same --ref-start/--ref-end in a file that starts `offset` seconds into the recording
        (a link of which only --start/--end was downloaded)."""
        if not offset:
            return self
        start = self.ref_start if self.ref_start is not None else offset
        if start < offset:
            raise UserError(
                f"--ref-start {start:g} s is before --start ({offset:g} s): only --start/--end of a link "
                "is downloaded"
            )
        end = None if self.ref_end is None else self.ref_end - offset
        return replace(self, ref_start=start - offset, ref_end=end)


def _span_too_long(seconds: float) -> str:
    return (
        f"the chosen span is {seconds:.1f} s; a clone reference should be 3-{MAX_REF_S:.0f} s "
        f"(at most {MAX_MANUAL_S:.0f} s): narrow --ref-start/--ref-end"
    )


@dataclass
class Candidate:
    index: int
    start: float
    end: float
    speech_s: float
    quality: dict
    quality_score: float
    duration_fit: float
    prescore: float
    transcript: str | None = None
    avg_logprob: float | None = None
    confidence: float | None = None
    language: str | None = None  # ISO code whisper reported
    language_prob: float | None = None
    coverage: float | None = None
    uncovered: list[list[float]] = field(default_factory=list)
    rate_ratio: float | None = None
    verification: dict | None = None  # --verify-ref-text: {"heard", "wer", "confidence", "verdict"}
    score: float = 0.0
    parts: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in (
            "start",
            "end",
            "speech_s",
            "quality_score",
            "duration_fit",
            "prescore",
            "score",
            "avg_logprob",
            "confidence",
            "language_prob",
            "coverage",
            "rate_ratio",
        ):
            if isinstance(data.get(key), float):
                data[key] = round(data[key], 4)
        data["parts"] = {k: round(v, 4) for k, v in self.parts.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Candidate:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class PreparedRef:
    """The chosen reference: 24 kHz normalised audio + what is said in it + why it was chosen."""

    source: str
    source_sha256: str
    source_duration: float
    start: float
    end: float
    audio: Audio
    segment_path: Path
    transcript: str | None
    transcript_source: str  # whisper | provided | none
    language: str  # Qwen name or "auto"
    detected_language: str | None
    language_prob: float | None
    confidence: float | None
    avg_logprob: float | None
    score: float | None
    parts: dict
    quality: dict
    candidates: list[Candidate]
    chosen_index: int
    chosen_by: str  # auto | user | bounds | ref-text | registered
    gain_db: float
    asr_model: str | None
    x_vector_only: bool
    cache_dir: Path
    reused: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    forced: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def decoded_source(self) -> Path | None:
        """The whole recording this reference was cut from, as decoded at 24 kHz (the decode stage's
        cache); None for a registered voice's reference used as is."""
        path = Path(self.cache_dir) / "source-24k.wav"
        return path if path.is_file() else None

    def registry_files(self):
        """`write_files` for VoiceRegistry.create: ref.wav, and source.wav by voices.reference_files' rule."""
        from audiobox.voices import reference_files

        return reference_files(self.audio, self.decoded_source)

    def ref_info(self) -> dict:
        """What goes into voice.json's "ref" (ref.wav is this audio)."""
        from audiobox.voices import ref_record

        return ref_record(
            self.audio.duration,
            self.audio.sample_rate,
            self.transcript,
            self.language,
            transcript_source=self.transcript_source,
            detected_language=self.detected_language,
            segment={"start": round(self.start, 3), "end": round(self.end, 3)},
            source_file=self.source,
            source_sha256=self.source_sha256,
            chosen_by=self.chosen_by,
            x_vector_only=self.x_vector_only,
            scores={
                "score": None if self.score is None else round(self.score, 4),
                "confidence": None if self.confidence is None else round(self.confidence, 4),
                "avg_logprob": None if self.avg_logprob is None else round(self.avg_logprob, 4),
                "parts": {k: round(v, 4) for k, v in self.parts.items()},
                "quality": self.quality,
            },
            forced=self.forced,
            asr_model=self.asr_model,
            gain_db=round(self.gain_db, 2),
            scoring_version=SCORING_VERSION,
        )

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "source_sha256": self.source_sha256,
            "source_duration": round(self.source_duration, 3),
            "segment": {
                "start": round(self.start, 3),
                "end": round(self.end, 3),
                "duration": round(self.duration, 3),
            },
            "segment_path": str(self.segment_path),
            "transcript": self.transcript,
            "transcript_source": self.transcript_source,
            "language": self.language,
            "detected_language": self.detected_language,
            "language_prob": self.language_prob,
            "confidence": self.confidence,
            "avg_logprob": self.avg_logprob,
            "score": self.score,
            "parts": self.parts,
            "quality": self.quality,
            "chosen_index": self.chosen_index,
            "chosen_by": self.chosen_by,
            "candidates": [c.to_dict() for c in self.candidates],
            "gain_db": round(self.gain_db, 2),
            "asr_model": self.asr_model,
            "x_vector_only": self.x_vector_only,
            "cache_dir": str(self.cache_dir),
            "reused": self.reused,
            "warnings": self.warnings,
            "forced": self.forced,
            "scoring_version": SCORING_VERSION,
        }


# --- candidate planning (pure functions, tested directly) ------------------------------------------


@dataclass(frozen=True)
class Unit:
    """A stretch that is never cut: VAD spans joined across pauses shorter than CUT_GAP_S."""

    start: float
    end: float
    speech_s: float


def _span_pairs(spans) -> list[tuple[float, float]]:
    return [((s.start, s.end) if hasattr(s, "start") else (float(s[0]), float(s[1]))) for s in spans]


def speech_units(spans, cut_gap_s: float = CUT_GAP_S) -> list[Unit]:
    units: list[Unit] = []
    for start, end in sorted(_span_pairs(spans)):
        if units and start - units[-1].end < cut_gap_s:
            last = units[-1]
            units[-1] = Unit(last.start, max(last.end, end), last.speech_s + (end - start))
        else:
            units.append(Unit(start, end, end - start))
    return units


def _quietest_cut(samples: np.ndarray, sr: int, lo: float, hi: float, target: float) -> float:
    """Time of the quietest 30 ms frame in [lo, hi], mildly preferring frames near `target`."""
    a, b = int(lo * sr), int(hi * sr)
    if b - a < int(0.05 * sr):
        return (lo + hi) / 2
    powers = frame_powers(samples[a:b], sr)
    db = 10 * np.log10(np.maximum(powers, 1e-10))
    times = lo + (np.arange(powers.size) * 0.010 + 0.015)
    cost = db + 2.0 * np.abs(times - target)  # 2 dB per second away from the target
    return float(times[int(np.argmin(cost))])


def split_long_units(
    units: list[Unit],
    samples: np.ndarray,
    sr: int,
    max_s: float = MAX_REF_S,
    target_s: float = TARGET_REF_S,
    min_s: float = MIN_REF_S,
) -> list[Unit]:
    """Units longer than max_s (no phrase pause anywhere) are cut at their quietest frame."""
    out: list[Unit] = []
    for unit in units:
        start, end = unit.start, unit.end
        density = unit.speech_s / max(unit.end - unit.start, 1e-6)
        while end - start > max_s:
            lo = start + min_s
            hi = min(start + max_s, end - min_s) if end - start > max_s + min_s else end - min_s
            hi = max(hi, lo + 0.05)
            cut = _quietest_cut(samples, sr, lo, hi, start + target_s)
            out.append(Unit(start, cut, (cut - start) * density))
            start = cut
        out.append(Unit(start, end, (end - start) * density))
    return out


def plan_windows(
    units: list[Unit],
    total_s: float,
    min_s: float = MIN_REF_S,
    max_s: float = MAX_REF_S,
    max_inner_gap_s: float = MAX_INNER_GAP_S,
    pad_s: float = EDGE_PAD_S,
) -> list[tuple[float, float, float]]:
    """(start, end, speech_s) for every run of whole units lasting min_s..max_s (pauses inside at
    most max_inner_gap_s), padded into the surrounding pauses but never past their midpoints."""
    windows = []
    for i, first in enumerate(units):
        speech = 0.0
        for j in range(i, len(units)):
            if j > i and units[j].start - units[j - 1].end > max_inner_gap_s:
                break
            extent = units[j].end - first.start
            if extent > max_s:
                break
            speech += units[j].speech_s
            if extent < min_s:
                continue
            before = units[i - 1].end if i > 0 else 0.0
            after = units[j + 1].start if j + 1 < len(units) else total_s
            start = max(first.start - pad_s, (before + first.start) / 2 if i > 0 else 0.0)
            end = min(units[j].end + pad_s, (units[j].end + after) / 2 if j + 1 < len(units) else total_s)
            windows.append((round(start, 3), round(end, 3), speech))
    return windows


def thin_windows(
    windows: list[tuple[float, float, float]], limit: int = MAX_MEASURED_WINDOWS, min_fit: float = 0.6
) -> list[tuple[float, float, float]]:
    """Long recordings give thousands of windows: keep those near 8 s, then an even spread over the
    file (so the best stretch anywhere is still measured). Short recordings are untouched."""
    if len(windows) <= limit:
        return windows
    good = [w for w in windows if duration_fit(w[1] - w[0]) >= min_fit] or windows
    if len(good) <= limit:
        return good
    step = len(good) / limit
    return [good[int(i * step)] for i in range(limit)]


def duration_fit(duration: float, target_s: float = TARGET_REF_S) -> float:
    """1 at the target length, 0 at 3 s and 13 s (linear)."""
    return float(max(0.0, 1.0 - abs(duration - target_s) / 5.0))


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / max(1e-6, min(a[1] - a[0], b[1] - b[0]))


def pick_diverse(cands: list[Candidate], limit: int, max_overlap: float = 0.3) -> list[Candidate]:
    """Best pre-scores first, skipping candidates that mostly overlap one already kept."""
    kept: list[Candidate] = []
    for cand in sorted(cands, key=lambda c: (-c.prescore, c.start)):
        if all(_overlap((cand.start, cand.end), (k.start, k.end)) <= max_overlap for k in kept):
            kept.append(cand)
        if len(kept) >= limit:
            break
    return sorted(kept, key=lambda c: c.start)


# --- scoring ----------------------------------------------------------------------------------------


def confidence_part(avg_logprob: float) -> float:
    """avg_logprob -1.2 -> 0, -0.2 -> 1 (whisper's clean speech sits around -0.1..-0.4)."""
    return float(min(1.0, max(0.0, (avg_logprob + 1.2) / 1.0)))


SCORE_WEIGHTS = {"confidence": 0.40, "quality": 0.35, "duration": 0.15, "coverage": 0.10}


def score_candidate(cand: Candidate) -> None:
    """score = 0.40 confidence + 0.35 quality + 0.15 duration fit + 0.10 coverage (0..1 each).

    Without a whisper transcript (x-vector mode, --ref-text) the confidence and coverage terms
    drop out and the rest is renormalised. A candidate whose transcript fails the coverage or
    length checks keeps its score but carries the problem (shown, and enforced by the gate).
    """
    parts = {"quality": cand.quality_score, "duration": cand.duration_fit}
    if cand.avg_logprob is not None:
        parts["confidence"] = confidence_part(cand.avg_logprob)
        parts["coverage"] = cand.coverage if cand.coverage is not None else 0.0
    total = sum(SCORE_WEIGHTS[k] for k in parts)
    cand.parts = parts
    cand.score = sum(SCORE_WEIGHTS[k] * v for k, v in parts.items()) / total


def coverage_of(
    words, speech: list[tuple[float, float]], slack_s: float = 0.3
) -> tuple[float, list[list[float]]]:
    """Share of the speech (segment-relative spans) that lies within some word (+- slack)."""
    total = sum(e - s for s, e in speech)
    if total <= 0:
        return 1.0, []
    intervals = sorted((max(0.0, w.start - slack_s), w.end + slack_s) for w in words)
    merged: list[list[float]] = []
    for s, e in intervals:
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    covered = 0.0
    uncovered: list[list[float]] = []
    for s, e in speech:
        inside = sum(max(0.0, min(e, m[1]) - max(s, m[0])) for m in merged)
        covered += inside
        if e - s - inside > 0.5:
            uncovered.append([round(s, 2), round(e, 2)])
    return covered / total, uncovered


MAX_VERIFY_WER = 0.5


def verify_words(
    ref_text: str, heard: dict, min_confidence: float | None = None, language: str = "auto"
) -> dict:
    """Compare a given transcript with whisper's. Only a confident whisper can call it a mismatch."""
    from audiobox.takes.text import error_rate

    confidence = float(heard.get("confidence", math.exp(min(0.0, float(heard["avg_logprob"])))))
    wer = error_rate(ref_text, heard.get("text", ""), language)
    floor = DEFAULT_MIN_CONFIDENCE if min_confidence is None else min_confidence
    verdict = "unsure" if confidence < floor else ("mismatch" if wer > MAX_VERIFY_WER else "match")
    return {
        "heard": heard.get("text", ""),
        "wer": round(wer, 3),
        "confidence": round(confidence, 4),
        "verdict": verdict,
    }


# --- the pipeline -------------------------------------------------------------------------------------


def _relative_spans(spans: list[tuple[float, float]], start: float, end: float) -> list[tuple[float, float]]:
    out = []
    for s, e in spans:
        s2, e2 = max(s, start), min(e, end)
        if e2 > s2:
            out.append((s2 - start, e2 - start))
    return out


def _language_name(code: str | None) -> str | None:
    from audiobox.languages import language_for_code

    lang = language_for_code(code)
    return lang.name if lang else None


class RefPreparer:
    """Runs the pipeline for one source file. `asr_loader()` returns a Transcriber (lazy: only
    called when a transcript is not cached)."""

    def __init__(
        self,
        refs_root: Path,
        options: RefOptions,
        asr_loader: Callable[[], object] | None = None,
        progress: ProgressFn | None = None,
    ):
        self.root = Path(refs_root)
        self.options = options
        self._asr_loader = asr_loader
        self._asr = None
        self.progress = Reporter(progress)
        self.reused: dict = {}
        self.warnings: list[str] = []

    # -- stages ------------------------------------------------------------------------------------
    def decode(self, path: Path) -> tuple[str, Audio, Path]:
        if not path.is_file():
            raise UserError(f"reference audio not found: {path}")
        sha = sha256_file(path)
        base = self.root / sha[:32]
        decoded = base / "source-24k.wav"

        def decode() -> dict:
            audio = load_audio(path, sample_rate=TTS_SAMPLE_RATE)
            if not np.all(np.isfinite(audio.samples)):
                raise UserError(f"{path} decodes to invalid samples (NaN/inf)")
            write_audio(decoded, audio.samples, audio.sample_rate)
            return {
                "source": str(path),
                "sha256": sha,
                "duration_sec": round(audio.duration, 3),
                "sample_rate": audio.sample_rate,
                "decode_version": DECODE_VERSION,
            }

        _info, self.reused["decode"] = cached_json(
            base / "source.json",
            refresh=self.options.force,
            make=decode,
            valid=lambda info: info.get("decode_version") == DECODE_VERSION and decoded.is_file(),
        )
        return sha, load_audio(decoded), base

    def speech_spans(self, audio: Audio, base: Path) -> list[tuple[float, float]]:
        from audiobox.vad import VadSettings, load_vad

        settings = VadSettings()

        def find_speech() -> dict:
            self.progress.start("vad", audio.duration, "s")
            spans = load_vad().speech_spans(
                audio.samples,
                audio.sample_rate,
                settings=settings,
                progress=self.progress.shifted("vad", 0.0, audio.duration),
            )
            self.progress.end("vad", f"{sum(s.end - s.start for s in spans):.0f} s speech")
            return {"vad": settings.key(), "spans": [[round(s.start, 3), round(s.end, 3)] for s in spans]}

        data, self.reused["speech"] = cached_json(
            base / f"speech-{sha256_json(settings.key())[:12]}.json",
            refresh=self.options.force,
            make=find_speech,
        )
        return [tuple(s) for s in data["spans"]]

    def asr(self):
        if self._asr is None:
            if self._asr_loader is None:
                raise UserError("a transcript is needed: pass --ref-text, or use --x-vector-only")
            with self.progress.step("load", f"whisper {self.options.asr_model}"):
                self._asr = self._asr_loader()
        return self._asr

    def transcribe(self, audio: Audio, base: Path, start: float, end: float) -> dict:
        """Transcript of [start, end] of the decoded source, cached by bounds + model + language."""
        from audiobox.asr import ASR_VERSION, Transcript

        opts = self.options
        key = sha256_json(
            {
                "start": round(start, 3),
                "end": round(end, 3),
                "model": opts.asr_model,
                "language": opts.language,
                "asr_version": ASR_VERSION,
            }
        )[:20]

        def transcribe() -> dict:
            result: Transcript = self.asr().transcribe(
                self._cut(audio, start, end),
                language=opts.language,
                word_timestamps=True,
                beam_size=5,
                temperature=0.0,
            )
            return result.to_dict()

        data, reused = cached_json(base / "transcripts" / f"{key}.json", refresh=opts.force, make=transcribe)
        if reused:
            self.reused["transcripts"] = self.reused.get("transcripts", 0) + 1
        return data

    @staticmethod
    def _cut(audio: Audio, start: float, end: float) -> Audio:
        a = max(0, int(round(start * audio.sample_rate)))
        b = min(len(audio.samples), int(round(end * audio.sample_rate)))
        return Audio(audio.samples[a:b].copy(), audio.sample_rate)

    def _candidate(
        self,
        audio: Audio,
        spans,
        start: float,
        end: float,
        speech_s: float | None = None,
        transcript: str | None = None,
        loudness: bool = True,
    ) -> Candidate:
        rel = _relative_spans(spans, start, end)
        segment = self._cut(audio, start, end)
        lang = None if self.options.language == "auto" else self.options.language
        m = measure(
            segment.samples,
            segment.sample_rate,
            speech_spans=rel,
            transcript=transcript,
            language=lang,
            loudness=loudness,
        )
        q = quality_score(m)
        speech = speech_s if speech_s is not None else m.speech_s
        fit = duration_fit(end - start)
        return Candidate(
            index=0,
            start=start,
            end=end,
            speech_s=speech,
            quality={**m.to_dict(), "parts": q.parts},
            quality_score=q.score,
            duration_fit=fit,
            prescore=0.6 * q.score + 0.4 * fit,
        )

    def _add_transcript(self, cand: Candidate, data: dict, spans) -> None:
        from audiobox.asr import Word

        lang = None if self.options.language == "auto" else self.options.language
        cand.transcript = data["text"]
        cand.avg_logprob = float(data["avg_logprob"])
        cand.confidence = float(data.get("confidence", math.exp(min(0.0, cand.avg_logprob))))
        cand.language = data.get("language")
        cand.language_prob = data.get("language_prob")
        words = [Word(**w) for w in data.get("words", [])]
        cand.coverage, cand.uncovered = coverage_of(words, _relative_spans(spans, cand.start, cand.end))
        if cand.transcript.strip():
            cand.rate_ratio = pace_ratio(
                cand.transcript, cand.speech_s, lang or _language_name(cand.language)
            )
        self._check(cand)

    def _check(self, cand: Candidate) -> None:
        """Fill cand.problems: the reasons this transcript/segment pair is not trustworthy."""
        opts = self.options
        cand.problems = []
        if cand.speech_s < MIN_REF_S - 0.5:
            cand.problems.append(
                f"only {cand.speech_s:.1f} s of speech in the segment (a clone reference needs at least {MIN_REF_S:.0f} s)"
            )
        if opts.x_vector_only:
            return
        if cand.transcript is not None and not cand.transcript.strip():
            cand.problems.append("the transcript is empty")
            return
        if cand.confidence is not None and cand.confidence < opts.min_confidence:
            cand.problems.append(
                f"transcript confidence {cand.confidence:.2f} is below {opts.min_confidence:.2f} "
                f"(avg log-prob {cand.avg_logprob:.2f})"
            )
        if cand.coverage is not None and cand.coverage < MIN_COVERAGE:
            gaps = ", ".join(f"{cand.start + s:.1f}-{cand.start + e:.1f} s" for s, e in cand.uncovered[:3])
            cand.problems.append(
                f"the transcript covers only {cand.coverage:.0%} of the speech"
                + (f" (no words at {gaps})" if gaps else "")
            )
        if cand.verification:  # re-judged with this run's threshold (the words and scores are cached)
            v = cand.verification
            v["verdict"] = (
                "unsure"
                if v["confidence"] < opts.min_confidence
                else ("mismatch" if v["wer"] > MAX_VERIFY_WER else "match")
            )
        if (cand.verification or {}).get("verdict") == "mismatch":
            v = cand.verification
            cand.problems.append(
                f"whisper hears different words (WER {v['wer']:.2f} at confidence "
                f"{v['confidence']:.2f}): {v['heard'][:80]!r}"
            )
        if cand.rate_ratio is not None and not RATE_RANGE[0] <= cand.rate_ratio <= RATE_RANGE[1]:
            chars = text_chars(cand.transcript or "")
            cand.problems.append(
                f"the transcript has {chars} characters for {cand.speech_s:.1f} s of speech "
                f"({cand.rate_ratio:.2f}x the usual pace): it does not match the audio"
            )

    # -- selection -----------------------------------------------------------------------------------
    def select(self, audio: Audio, spans, base: Path, source_sha: str) -> tuple[list[Candidate], int, str]:
        """(scored candidates, index of the best, mode); cached by everything that decides them."""
        opts = self.options
        if opts.ref_start is not None or opts.ref_end is not None:
            mode = "bounds"
        else:
            mode = "ref-text" if opts.ref_text else "auto"

        def choose() -> dict:
            cands = self._plan(mode, audio, spans)
            for i, cand in enumerate(cands, 1):
                cand.index = i
            if opts.uses_asr:
                self._transcribe_candidates(cands, audio, spans, base)
            else:
                self._use_ref_text(cands, audio, base)
            for cand in cands:
                score_candidate(cand)
            return {
                "scoring_version": SCORING_VERSION,
                "mode": mode,
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "best": max(cands, key=lambda c: (not c.problems, c.score, -c.start)).index,
                "candidates": [c.to_dict() for c in cands],
            }

        data, reused = cached_json(
            base / f"candidates-{self._selection_key(mode, source_sha)}.json", refresh=opts.force, make=choose
        )
        self.reused["candidates"] = reused
        cands = [Candidate.from_dict(c) for c in data["candidates"]]
        for cand in cands:
            self._check(cand)  # re-evaluated against this run's thresholds (a cached pick keeps them)
        return cands, int(data["best"]), mode

    def _selection_key(self, mode: str, source_sha: str) -> str:
        opts = self.options
        return sha256_json(
            {
                "source": source_sha,
                "mode": mode,
                "start": opts.ref_start,
                "end": opts.ref_end,
                "ref_text": opts.ref_text,
                "language": opts.language,
                "asr": opts.asr_model if opts.uses_asr else None,
                "x_vector_only": opts.x_vector_only,
                "verify": opts.asr_model if (opts.verify_ref_text and opts.ref_text) else None,
                "max_candidates": opts.max_candidates,
                "scoring": SCORING_VERSION,
                "quality": QUALITY_VERSION,
            }
        )[:20]

    def _plan(self, mode: str, audio: Audio, spans) -> list[Candidate]:
        """The spans worth transcribing: the user's bounds, the whole speech, or the best windows."""
        if mode == "bounds":
            return [self._bounds_candidate(audio, spans)]
        if mode == "ref-text":
            return [self._ref_text_candidate(audio, spans)]
        return self._auto_candidates(audio, spans)

    def _bounds_candidate(self, audio: Audio, spans) -> Candidate:
        opts, total = self.options, audio.duration
        start = 0.0 if opts.ref_start is None else float(opts.ref_start)
        end = total if opts.ref_end is None else float(opts.ref_end)
        if start >= total:  # the order of the bounds was checked before decoding (RefOptions.check)
            raise UserError(f"--ref-start {start:g} s is past the end of the recording ({total:.1f} s)")
        end = min(end, total)
        if end - start > MAX_MANUAL_S:
            raise UserError(_span_too_long(end - start))
        speech = sum(e - s for s, e in _relative_spans(spans, start, end))
        if speech < MIN_REF_S:
            raise UserError(
                f"only {speech:.1f} s of speech between {start:g} and {end:g} s; a clone reference "
                f"needs at least {MIN_REF_S:.0f} s"
            )
        if end - start > MAX_REF_S:
            self.warnings.append(
                f"the chosen span is {end - start:.1f} s; references of 3-{MAX_REF_S:.0f} s clone best"
            )
        return self._candidate(audio, spans, start, end, speech)

    def _ref_text_candidate(self, audio: Audio, spans) -> Candidate:
        if not spans:
            raise UserError("no speech found in the recording")
        speech_total = sum(e - s for s, e in spans)
        start = max(0.0, spans[0][0] - EDGE_PAD_S)
        end = min(audio.duration, spans[-1][1] + EDGE_PAD_S)
        if end - start > MAX_REF_TEXT_SPAN_S:
            raise UserError(
                f"--ref-text must describe the whole reference, but the recording has "
                f"{end - start:.1f} s of speech; pass --ref-start/--ref-end for the part the text covers"
            )
        if speech_total < MIN_REF_S:
            raise UserError(
                f"only {speech_total:.1f} s of speech in the recording; a clone reference needs at "
                f"least {MIN_REF_S:.0f} s"
            )
        return self._candidate(audio, spans, start, end, speech_total)

    def _auto_candidates(self, audio: Audio, spans) -> list[Candidate]:
        speech_total = sum(e - s for s, e in spans)
        if speech_total < MIN_REF_S:
            raise UserError(
                f"only {speech_total:.1f} s of speech in the recording; a clone reference needs at "
                f"least {MIN_REF_S:.0f} s"
                if speech_total > 0
                else "no speech found in the recording"
            )
        units = split_long_units(speech_units(spans), audio.samples, audio.sample_rate)
        windows = plan_windows(units, audio.duration)
        if not windows:  # speech only in short bursts far apart: allow longer pauses inside
            windows = plan_windows(units, audio.duration, max_inner_gap_s=4.0)
        if not windows:
            raise UserError(
                f"no stretch of {MIN_REF_S:.0f}-{MAX_REF_S:.0f} s of connected speech in the recording "
                f"({speech_total:.1f} s of speech in short bursts); pass --ref-start/--ref-end"
            )
        windows = thin_windows(windows)
        self.progress.note("reference", f"measuring {len(windows)} candidate spans")
        pool = [self._candidate(audio, spans, s, e, sp, loudness=False) for s, e, sp in windows]
        return [
            self._candidate(audio, spans, c.start, c.end, c.speech_s)  # full measures for the kept
            for c in pick_diverse(pool, max(1, self.options.max_candidates))
        ]

    def _transcribe_candidates(self, cands: list[Candidate], audio: Audio, spans, base: Path) -> None:
        """Whisper on each candidate; its words decide coverage, and the quality is re-measured with them."""
        lang = None if self.options.language == "auto" else self.options.language
        self.progress.start("transcribe", len(cands), "candidates")
        for done, cand in enumerate(cands):
            self.progress.update("transcribe", done, message=f"{cand.start:.1f}-{cand.end:.1f} s")
            self._add_transcript(cand, self.transcribe(audio, base, cand.start, cand.end), spans)
            seg = self._cut(audio, cand.start, cand.end)
            m = measure(
                seg.samples,
                seg.sample_rate,
                speech_spans=_relative_spans(spans, cand.start, cand.end),
                transcript=cand.transcript,
                language=lang or _language_name(cand.language),
            )
            q = quality_score(m)
            cand.quality, cand.quality_score = {**m.to_dict(), "parts": q.parts}, q.score
        self.progress.end("transcribe")

    def _use_ref_text(self, cands: list[Candidate], audio: Audio, base: Path) -> None:
        """No whisper transcript: the given --ref-text (checked for pace, optionally verified) or none."""
        opts = self.options
        lang = None if opts.language == "auto" else opts.language
        for cand in cands:
            if opts.ref_text:
                cand.transcript = opts.ref_text
                cand.rate_ratio = pace_ratio(opts.ref_text, cand.speech_s, lang)
                if opts.verify_ref_text:
                    self.progress.note(
                        "reference",
                        f"checking --ref-text against whisper ({cand.start:.1f}-{cand.end:.1f} s)",
                    )
                    heard = self.transcribe(audio, base, cand.start, cand.end)
                    cand.verification = verify_words(opts.ref_text, heard, opts.min_confidence, opts.language)
            self._check(cand)

    # -- the whole thing -----------------------------------------------------------------------------
    def prepare(self, path: Path) -> PreparedRef:
        opts = self.options
        path = Path(path)
        sha, audio, base = self.decode(path)
        if audio.samples.size == 0 or float(np.max(np.abs(audio.samples))) < SILENT_PEAK:
            raise UserError(f"{path} is silent")
        spans = self.speech_spans(audio, base)
        if not spans:
            raise UserError(f"no speech found in {path}")
        cands, best, mode = self.select(audio, spans, base, sha)
        chosen_by = {"bounds": "bounds", "ref-text": "ref-text"}.get(mode, "auto")
        index = best
        if opts.chooser is not None and len(cands) >= 1:
            picked = int(opts.chooser(cands, best))
            if picked != best:
                chosen_by = "user"
            index = picked
        cand = next(c for c in cands if c.index == index)
        if (cand.verification or {}).get("verdict") == "unsure":
            self.warnings.append(
                f"--ref-text not verified: whisper is unsure of what it hears "
                f"(confidence {cand.verification['confidence']:.2f})"
            )
        forced = self._gate(cand, path)

        # the segment itself: cut from the 24 kHz decode, one gain to TARGET_LUFS
        seg_key = sha256_json(
            {"start": cand.start, "end": cand.end, "lufs": TARGET_LUFS, "decode": DECODE_VERSION}
        )[:16]
        seg_path = base / f"ref-{seg_key}.wav"
        raw = self._cut(audio, cand.start, cand.end)
        gain = loudness_gain(raw.samples, raw.sample_rate, TARGET_LUFS, PEAK_CEILING)

        def normalise(p: Path) -> Audio:
            write_audio(p, (raw.samples * gain).astype(np.float32), raw.sample_rate)
            return load_audio(p)

        segment, self.reused["segment"] = cached_file(
            seg_path, refresh=opts.force, load=load_audio, make=normalise
        )
        if opts.x_vector_only:
            transcript, source = None, "none"
        elif opts.ref_text:
            transcript, source = opts.ref_text.strip(), "provided"
        else:
            transcript, source = (cand.transcript or "").strip(), "whisper"
        language = opts.language
        if language == "auto" and cand.language:
            name = _language_name(cand.language)
            if name:
                language = name
            else:
                self.warnings.append(
                    f"whisper hears language {cand.language!r}, which Qwen3-TTS does not speak"
                )
        result = PreparedRef(
            source=str(path.resolve()),
            source_sha256=sha,
            source_duration=audio.duration,
            start=cand.start,
            end=cand.end,
            audio=segment,
            segment_path=seg_path,
            transcript=transcript,
            transcript_source=source,
            language=language,
            detected_language=cand.language,
            language_prob=cand.language_prob,
            confidence=cand.confidence,
            avg_logprob=cand.avg_logprob,
            score=cand.score,
            parts=cand.parts,
            quality=cand.quality,
            candidates=cands,
            chosen_index=index,
            chosen_by=chosen_by,
            gain_db=20 * math.log10(max(gain, 1e-9)),
            asr_model=opts.asr_model if opts.uses_asr else None,
            x_vector_only=opts.x_vector_only,
            cache_dir=base,
            reused=dict(self.reused),
            warnings=list(self.warnings),
            forced=forced,
        )
        atomic_write_json(base / f"prepared-{seg_key}.json", result.to_dict())
        return result

    def _gate(self, cand: Candidate, path: Path) -> list[str]:
        if not cand.problems:
            return []
        if self.options.force_bad_ref:
            self.warnings.extend(f"kept despite: {p}" for p in cand.problems)
            return list(cand.problems)
        hints = []
        if self.options.uses_asr:
            hints.append("give the exact words with --ref-text")
        if self.options.ref_text:
            hints.append(
                "check that --ref-text is exactly what is said in the span (set it with --ref-start/--ref-end)"
            )
        else:
            hints.append("pick another span with --ref-start/--ref-end or --interactive")
        hints.append("or pass --force-bad-ref to use it anyway")
        raise UserError(
            f"reference {cand.start:.1f}-{cand.end:.1f} s of {path.name} rejected: "
            + "; ".join(cand.problems)
            + " — "
            + ", ".join(hints)
        )


def prepare_reference(
    path: Path,
    refs_root: Path,
    options: RefOptions,
    asr_loader: Callable[[], object] | None = None,
    progress: ProgressFn | None = None,
) -> PreparedRef:
    """Decode, find speech, choose and check a segment; see the module docstring."""
    options.check()
    return RefPreparer(refs_root, options, asr_loader, progress).prepare(Path(path))
