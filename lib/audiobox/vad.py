"""Speech detection with Silero VAD, run through its batched ("sequence") ONNX model.

Why this backend: silero-vad 6.2.3 ships `silero_vad_16k_sequence.onnx`, which scores a whole
block of 32 ms frames in one ONNX call instead of one call per frame. On this project's 2-core box
it measured ~5.7x the throughput of the package's default TorchScript path with identical
timestamps (see docs/API.md and bench/split_bench.py).

Why not `import silero_vad`: importing the package imports torch and calls
`torch.set_num_threads(1)` for the whole process, which slows Demucs (same process) by ~1.6x.
This module only locates the model file inside the installed package (no import of it) and runs it
with onnxruntime + numpy, so it never imports torch. `preserve_torch_threads()` is exported for the
code paths that do import silero_vad (the JIT reference in the bench, tests comparing against it).
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiobox.errors import UserError
from audiobox.progress import ProgressEvent, ProgressFn

VAD_SAMPLE_RATE = 16000
FRAME_SAMPLES = 512  # 32 ms at 16 kHz: the model's hop
CONTEXT_SAMPLES = 64  # tail of the previous frame that the model sees in front of each frame
FRAME_SECONDS = FRAME_SAMPLES / VAD_SAMPLE_RATE
SEQUENCE_MODEL_FILE = "silero_vad_16k_sequence.onnx"
DEFAULT_BLOCK_FRAMES = 512  # frames per ONNX call (~16.4 s of audio)


@dataclass(frozen=True)
class Span:
    """A stretch of audio in seconds from the start of the analysed signal."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start

    def shifted(self, offset: float) -> Span:
        return Span(self.start + offset, self.end + offset)

    def to_list(self) -> list[float]:
        return [round(self.start, 3), round(self.end, 3)]


@dataclass(frozen=True)
class VadSettings:
    """How frame probabilities become spans.

    threshold/neg_threshold form a hysteresis: speech starts at p >= threshold and only ends after
    `min_silence_s` of p < neg_threshold, so a short dip inside a word does not split it.
    """

    threshold: float = 0.5
    neg_threshold: float | None = None  # default: threshold - 0.15
    min_speech_s: float = 0.25
    min_silence_s: float = 0.1
    pad_s: float = 0.03
    pad_end_s: float | None = None  # default: pad_s (onsets are detected late, offsets already late)

    def key(self) -> dict:
        return {
            "threshold": self.threshold,
            "neg_threshold": self.neg_threshold,
            "min_speech_s": self.min_speech_s,
            "min_silence_s": self.min_silence_s,
            "pad_s": self.pad_s,
            "pad_end_s": self.pad_end_s,
        }


def silero_model_path(filename: str = SEQUENCE_MODEL_FILE) -> Path:
    """Path of a model file shipped inside the silero-vad wheel, found without importing it."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.origin:
        raise UserError("silero-vad is not installed (pip install silero-vad==6.2.3)")
    path = Path(spec.origin).parent / "data" / filename
    if not path.is_file():
        raise UserError(f"silero-vad has no {filename}; this toolbox needs silero-vad==6.2.3")
    return path


@contextlib.contextmanager
def preserve_torch_threads() -> Iterator[None]:
    """Undo any `torch.set_num_threads` done inside the block (silero_vad's import sets 1)."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    try:
        yield
    finally:
        torch = sys.modules.get("torch")
        if torch is not None:
            if before is None:  # torch was first imported inside the block: use its own default
                import os

                before = (
                    len(os.sched_getaffinity(0))
                    if hasattr(os, "sched_getaffinity")
                    else (os.cpu_count() or 1)
                )
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)


def _frame_blocks(audio: np.ndarray, block_frames: int) -> Iterator[np.ndarray]:
    """Blocks of shape (n, CONTEXT+FRAME): each frame prefixed by the previous frame's tail."""
    n_frames = (audio.size + FRAME_SAMPLES - 1) // FRAME_SAMPLES
    context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
    for first in range(0, n_frames, block_frames):
        count = min(block_frames, n_frames - first)
        frames = np.zeros((count, FRAME_SAMPLES), dtype=np.float32)
        chunk = audio[first * FRAME_SAMPLES : (first + count) * FRAME_SAMPLES]
        frames.reshape(-1)[: chunk.size] = chunk
        block = np.empty((count, CONTEXT_SAMPLES + FRAME_SAMPLES), dtype=np.float32)
        block[:, CONTEXT_SAMPLES:] = frames
        block[0, :CONTEXT_SAMPLES] = context
        if count > 1:
            block[1:, :CONTEXT_SAMPLES] = frames[:-1, -CONTEXT_SAMPLES:]
        context = frames[-1, -CONTEXT_SAMPLES:].copy()
        yield block


def spans_from_probs(probs: np.ndarray, settings: VadSettings, audio_seconds: float) -> list[Span]:
    """Hysteresis over 32 ms frame probabilities -> padded speech spans (seconds)."""
    neg = (
        settings.neg_threshold if settings.neg_threshold is not None else max(settings.threshold - 0.15, 0.01)
    )
    raw: list[list[float]] = []
    start: float | None = None
    quiet_since: float | None = None
    for i, p in enumerate(np.asarray(probs, dtype=np.float32).tolist()):
        t = i * FRAME_SECONDS
        if start is None:
            if p >= settings.threshold:
                start, quiet_since = t, None
            continue
        if p >= settings.threshold:
            quiet_since = None
        elif p < neg:
            if quiet_since is None:
                quiet_since = t
            if t - quiet_since >= settings.min_silence_s:
                raw.append([start, quiet_since])
                start, quiet_since = None, None
    if start is not None:
        raw.append([start, quiet_since if quiet_since is not None else audio_seconds])
    raw = [s for s in raw if s[1] - s[0] >= settings.min_speech_s]
    # pad, never past the neighbours' midpoint nor the signal's ends
    out: list[Span] = []
    for i, (s, e) in enumerate(raw):
        lo = 0.0 if i == 0 else (raw[i - 1][1] + s) / 2
        hi = audio_seconds if i == len(raw) - 1 else (e + raw[i + 1][0]) / 2
        pad_end = settings.pad_s if settings.pad_end_s is None else settings.pad_end_s
        out.append(Span(round(max(lo, s - settings.pad_s), 4), round(min(hi, e + pad_end), 4)))
    return out


class SpeechDetector:
    """Silero VAD (sequence ONNX). Load once, call `speech_spans` on as many signals as needed."""

    def __init__(
        self, model_path: Path | None = None, threads: int = 1, block_frames: int = DEFAULT_BLOCK_FRAMES
    ):
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - it is a declared dependency
            raise UserError("onnxruntime is not installed (pip install onnxruntime)") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.model_path = Path(model_path) if model_path else silero_model_path()
        self.session = ort.InferenceSession(
            str(self.model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.block_frames = block_frames

    def frame_probs(
        self,
        samples: np.ndarray,
        sample_rate: int = VAD_SAMPLE_RATE,
        progress: ProgressFn | None = None,
    ) -> np.ndarray:
        """Speech probability per 32 ms frame (16 kHz input; other rates are resampled).

        `progress` gets a "vad" event (seconds of audio done) after each block (~16 s of audio).
        """
        audio = self._prepare(samples, sample_rate)
        h = np.zeros((1, 1, 128), dtype=np.float32)
        c = np.zeros((1, 1, 128), dtype=np.float32)
        parts = []
        for block in _frame_blocks(audio, self.block_frames):
            probs, h, c = self.session.run(["speech_probs", "hn", "cn"], {"input": block, "h": h, "c": c})
            parts.append(probs)
            if progress is not None:
                done = min(audio.size, sum(p.size for p in parts) * FRAME_SAMPLES)
                progress(
                    ProgressEvent(
                        "vad", done=done / VAD_SAMPLE_RATE, total=audio.size / VAD_SAMPLE_RATE, unit="s"
                    )
                )
        return np.concatenate(parts).reshape(-1) if parts else np.zeros(0, dtype=np.float32)

    def speech_spans(
        self,
        samples: np.ndarray,
        sample_rate: int = VAD_SAMPLE_RATE,
        *,
        min_speech_s: float = 0.25,
        min_silence_s: float = 0.1,
        pad_s: float = 0.03,
        threshold: float = 0.5,
        settings: VadSettings | None = None,
        progress: ProgressFn | None = None,
    ) -> list[Span]:
        """Speech spans in seconds. `settings` overrides the keyword knobs when given."""
        settings = settings or VadSettings(
            threshold=threshold, min_speech_s=min_speech_s, min_silence_s=min_silence_s, pad_s=pad_s
        )
        audio = self._prepare(samples, sample_rate)
        probs = self.frame_probs(audio, VAD_SAMPLE_RATE, progress=progress)
        return spans_from_probs(probs, settings, audio.size / VAD_SAMPLE_RATE)

    @staticmethod
    def _prepare(samples: np.ndarray, sample_rate: int) -> np.ndarray:
        audio = np.ascontiguousarray(np.asarray(samples, dtype=np.float32).reshape(-1))
        if sample_rate != VAD_SAMPLE_RATE:
            from audiobox.audio import resample

            audio = resample(audio, sample_rate, VAD_SAMPLE_RATE)
        return audio


_DETECTORS: dict[tuple, SpeechDetector] = {}


def load_vad(threads: int = 1) -> SpeechDetector:
    """The process-wide detector (loaded once, ~5 ms). One intra-op thread is the fastest per CPU-s."""
    key = (threads,)
    if key not in _DETECTORS:
        _DETECTORS[key] = SpeechDetector(threads=threads)
    return _DETECTORS[key]


def speech_seconds(spans: list[Span]) -> float:
    return float(sum(s.duration for s in spans))


def merge_spans(spans: list[Span], max_gap_s: float) -> list[Span]:
    """Join spans separated by less than max_gap_s (e.g. comma pauses inside a sentence)."""
    out: list[Span] = []
    for span in sorted(spans, key=lambda s: s.start):
        if out and span.start - out[-1].end < max_gap_s:
            out[-1] = Span(out[-1].start, max(out[-1].end, span.end))
        else:
            out.append(span)
    return out
