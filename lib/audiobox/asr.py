"""Speech recognition with faster-whisper (CTranslate2): one model per process, reused.

Why these choices:
* The model is loaded once (`load_asr` keeps a process-wide table), because loading `small` takes
  seconds and every reference candidate / take needs a transcript.
* Audio is handed over as a 16 kHz numpy array (resampled with soxr by `audiobox.audio`), so the
  caller's trimming and normalisation are what whisper hears; no temp files, no ffmpeg here.
* The language is always passed through when the caller knows it (the old toolbox never did).
* `condition_on_previous_text=False` and a token cap proportional to the audio length keep a
  confused model from looping for hundreds of tokens (hallucination on silence, random models).
* A model that is not on disk is fetched only when the hub is reachable (audiobox.hub decides): with
  HF_HUB_OFFLINE=1 or no route to the hub we stop at once with one clear line instead of retrying
  for a minute.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from audiobox import hub
from audiobox.audio import Audio, resample
from audiobox.errors import UserError
from audiobox.progress import ProgressFn

ASR_VERSION = 1  # bump when transcription settings change (cache keys include it)
WHISPER_SAMPLE_RATE = 16000
DEFAULT_ASR_MODEL = "small"
TOKENS_PER_SECOND_CAP = 15.0  # generous: fast speech is ~8 tokens/s (Latin), ~14 (CJK)


@dataclass
class Word:
    start: float
    end: float
    word: str  # as faster-whisper names it; stripped of the leading space
    probability: float


@dataclass
class Segment:
    start: float
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    tokens: int


@dataclass
class Transcript:
    """What whisper heard. `avg_logprob` is token-weighted over segments; `confidence` = exp of it
    (the geometric-mean token probability, 0..1)."""

    text: str
    language: str | None  # ISO code as whisper reports it
    language_prob: float
    avg_logprob: float
    duration: float
    words: list[Word] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    model: str = ""

    @property
    def confidence(self) -> float:
        return float(math.exp(min(0.0, self.avg_logprob))) if self.text.strip() else 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["confidence"] = round(self.confidence, 4)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Transcript:
        return cls(
            text=data["text"],
            language=data.get("language"),
            language_prob=float(data.get("language_prob", 0.0)),
            avg_logprob=float(data["avg_logprob"]),
            duration=float(data.get("duration", 0.0)),
            words=[Word(**w) for w in data.get("words", [])],
            segments=[Segment(**s) for s in data.get("segments", [])],
            model=data.get("model", ""),
        )


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def resolve_device(device: str = "auto") -> str:
    if device != "auto":
        return device
    try:
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    except Exception:  # pragma: no cover - a broken CUDA setup still runs on CPU
        return "cpu"


def resolve_compute_type(compute_type: str, device: str) -> str:
    if compute_type != "auto":
        return compute_type
    return "float16" if device == "cuda" else "int8"


WHISPER_FILES = ["config.json", "preprocessor_config.json", "model.bin", "tokenizer.json", "vocabulary.*"]


def whisper_repo_id(model: str) -> str:
    """The hub repo of a faster-whisper size ('small') or hub id; a clear error for anything else."""
    from faster_whisper.utils import _MODELS, available_models  # the size -> repo table of the pinned release

    if "/" in model:
        return model
    if model not in _MODELS:
        raise UserError(
            f"unknown whisper model {model!r} (choose from {', '.join(available_models())}, "
            "a hub id like Systran/faster-whisper-small, or a local CTranslate2 dir)"
        )
    return _MODELS[model]


def cached_model(model: str, cache_dir: Path | None = None) -> Path | None:
    """The cached CTranslate2 dir of a whisper size or hub id (in `cache_dir`, then the HF cache)."""
    from faster_whisper.utils import download_model

    whisper_repo_id(model)
    for where in dict.fromkeys([cache_dir, hub.cache_dir()]):
        if where is None:
            continue
        try:
            return Path(download_model(model, local_files_only=True, cache_dir=str(where)))
        except Exception:
            continue
    return None


def download(model: str, cache_dir: Path | None = None, progress: ProgressFn | None = None) -> Path:
    """Fetch a whisper model into `cache_dir` (default: the HF cache); `progress` sees the bytes."""
    repo_id = whisper_repo_id(model)
    try:
        return hub.snapshot(repo_id, cache_dir, allow_patterns=WHISPER_FILES, progress=progress)
    except Exception as exc:
        raise UserError(f"could not download whisper model {model!r}: {type(exc).__name__}: {exc}") from None


def locate_model(model: str, cache_dir: Path | None = None, progress: ProgressFn | None = None) -> Path:
    """A local CTranslate2 Whisper dir for `model` (a size like 'small', a hub id, or a path).

    Looks in `cache_dir` (our `<cache>/asr`) and the Hugging Face cache; downloads into
    `cache_dir` only when the hub (audiobox.hub) can be reached.
    """
    path = Path(model).expanduser()
    if path.exists() or model.startswith(("/", ".", "~")):
        if not path.exists():
            raise UserError(f"whisper model dir {path} does not exist")
        if not (path / "model.bin").is_file():
            raise UserError(
                f"whisper model dir {path} has no model.bin (expected a CTranslate2 faster-whisper model)"
            )
        return path
    found = cached_model(model, cache_dir)
    if found is not None:
        return found
    hub.require_download(
        "whisper model",
        model,
        cache_dir or hub.cache_dir(),
        "pass --asr-model /path/to/ct2-model",
    )
    return download(model, cache_dir, progress)


class Transcriber:
    """A loaded faster-whisper model. Thread-safe for sequential use (one lock around decoding)."""

    def __init__(self, model: str, model_dir: Path, device: str, compute_type: str, threads: int):
        from faster_whisper import WhisperModel

        self.name = model
        self.model_name = model
        self.model_dir = model_dir
        self.device = device
        self.compute_type = compute_type
        try:
            self._model = WhisperModel(
                str(model_dir), device=device, compute_type=compute_type, cpu_threads=threads
            )
        except Exception as exc:
            raise UserError(
                f"cannot load whisper model from {model_dir}: {type(exc).__name__}: {exc}"
            ) from None
        self._lock = threading.Lock()

    @property
    def multilingual(self) -> bool:
        return bool(self._model.model.is_multilingual)

    def fingerprint(self) -> dict:
        """What identifies this model's output, for cache keys."""
        ident = self.name
        config = self.model_dir / "config.json"
        if config.is_file():
            from audiobox.fsutil import sha256_file

            ident = f"{self.name}:{sha256_file(config)[:16]}:{(self.model_dir / 'model.bin').stat().st_size}"
        return {"asr_model": ident, "asr_version": ASR_VERSION}

    def transcribe(
        self,
        audio: Audio,
        language: str | None = None,
        word_timestamps: bool = False,
        beam_size: int = 5,
        temperature: float | tuple[float, ...] | None = None,
    ) -> Transcript:
        """Transcribe a (short or long) mono clip. `language`: ISO code or Qwen name; None = detect."""
        from audiobox.languages import AUTO, LANGUAGES

        code = None
        if language and language.strip().lower() != AUTO:
            key = language.strip().lower()
            code = LANGUAGES[key].code if key in LANGUAGES else key
        samples = resample(audio.samples, audio.sample_rate, WHISPER_SAMPLE_RATE).astype(np.float32)
        duration = samples.size / WHISPER_SAMPLE_RATE
        if samples.size == 0:
            return Transcript("", code, 0.0, -10.0, 0.0, model=self.name)
        window = min(duration, 30.0)
        max_new = int(min(440, max(24, TOKENS_PER_SECOND_CAP * window + 16)))
        kwargs = dict(
            language=code,
            beam_size=beam_size,
            word_timestamps=word_timestamps,
            vad_filter=False,
            condition_on_previous_text=False,
            max_new_tokens=max_new,
        )
        if temperature is not None:
            kwargs["temperature"] = temperature
        if code is not None and not self.multilingual and code != "en":
            raise UserError(
                f"whisper model {self.name!r} is English-only; it cannot transcribe language {language!r}"
            )
        with self._lock:
            try:
                segments_iter, info = self._model.transcribe(samples, **kwargs)
                raw = list(segments_iter)
            except ValueError as exc:
                raise UserError(f"whisper failed: {exc}") from None
        segments: list[Segment] = []
        words: list[Word] = []
        logprob_sum = 0.0
        token_count = 0
        for seg in raw:
            n = max(1, len(seg.tokens))
            logprob_sum += seg.avg_logprob * n
            token_count += n
            segments.append(
                Segment(
                    round(min(seg.start, duration), 3),
                    round(min(seg.end, duration), 3),
                    seg.text.strip(),
                    float(seg.avg_logprob),
                    float(seg.no_speech_prob),
                    n,
                )
            )
            for w in seg.words or []:
                start = round(min(max(float(w.start), 0.0), duration), 3)
                end = round(min(max(float(w.end), start), duration), 3)
                words.append(Word(start, end, w.word.strip(), float(w.probability)))
        text = " ".join(s.text for s in segments if s.text).strip()
        avg = logprob_sum / token_count if token_count else -10.0
        return Transcript(
            text=text,
            language=info.language,
            language_prob=float(info.language_probability),
            avg_logprob=float(avg),
            duration=duration,
            words=words,
            segments=segments,
            model=self.name,
        )


_LOADED: dict[tuple, Transcriber] = {}
_LOAD_LOCK = threading.Lock()


def load_asr(
    model: str | None = DEFAULT_ASR_MODEL,
    device: str = "auto",
    compute_type: str = "auto",
    cache_dir: str | Path | None = None,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> Transcriber:
    """The process-wide Transcriber for this model/device (loaded on first use).

    `model`: a faster-whisper size ('tiny', 'small', 'large-v3'...), a hub id, or a local
    CTranslate2 dir. `cache_dir`: where downloads go (the CLI passes `<cache>/asr`); `progress`
    sees a download ("download" stage).
    """
    model = model or DEFAULT_ASR_MODEL
    device = resolve_device(device)
    compute_type = resolve_compute_type(compute_type, device)
    threads = threads or _cpu_count()
    key = (model, device, compute_type, threads, str(cache_dir))
    with _LOAD_LOCK:
        if key not in _LOADED:
            model_dir = locate_model(model, Path(cache_dir) if cache_dir else None, progress)
            _LOADED[key] = Transcriber(model, model_dir, device, compute_type, threads)
        return _LOADED[key]


load_transcriber = load_asr  # the name audiobox.takes uses
