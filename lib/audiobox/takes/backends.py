"""The ASR a take judge listens with: faster-whisper, or PocketSphinx for English offline.

The speaker encoder it compares voices with is `audiobox.speakers.SpeakerEncoder` (Resemblyzer's GE2E;
why not the Base model's own encoder: see audiobox.takes).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from audiobox.errors import UserError
from audiobox.progress import ProgressFn

log = logging.getLogger(__name__)


@dataclass
class WordTiming:
    word: str
    start: float
    end: float
    probability: float | None = None


class TakeTranscriber(Protocol):
    name: str

    def transcribe_take(
        self, samples: np.ndarray, sample_rate: int, language: str
    ) -> tuple[str, list[WordTiming]]: ...


class SphinxTranscriber:
    """English ASR from PocketSphinx: its acoustic model, dictionary and LM ship inside the wheel.

    Much weaker than Whisper on hard audio, but real, small (37 MB), fast on CPU and fully
    offline, so English takes can be checked without downloading Whisper weights.
    """

    name = "pocketsphinx-en-us"
    sample_rate = 16000

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as exc:  # optional dependency
            raise UserError("the sphinx ASR needs pocketsphinx: pip install 'py-audio-box[qa]'") from exc
        self._decoder = Decoder(samprate=self.sample_rate, loglevel="FATAL")
        self._frame_rate = float(self._decoder.config["frate"])

    def transcribe_take(self, samples, sample_rate, language):
        from audiobox.audio import resample

        if language not in ("english", "auto"):
            raise UserError(f"the sphinx ASR only knows English, not {language}; use --qa-asr whisper")
        pcm = np.clip(resample(samples, sample_rate, self.sample_rate), -1.0, 1.0)
        decoder = self._decoder
        decoder.start_utt()
        decoder.process_raw((pcm * 32767).astype(np.int16).tobytes(), full_utt=True)
        decoder.end_utt()
        words = []
        for seg in decoder.seg():
            word = re.sub(r"\(\d+\)$", "", seg.word)  # alternate pronunciations: word(2)
            if word.startswith(("<", "[")) or not word:
                continue  # <s>, </s>, <sil>, [NOISE]
            words.append(
                WordTiming(word, seg.start_frame / self._frame_rate, (seg.end_frame + 1) / self._frame_rate)
            )
        return " ".join(w.word for w in words), words


class WhisperTranscriber:
    """faster-whisper through `audiobox.asr` (one process-wide model, shared with the rest of the toolbox)."""

    def __init__(
        self,
        model: str | None = None,
        device: str = "auto",
        cache_dir=None,
        progress: ProgressFn | None = None,
    ) -> None:
        from audiobox.asr import load_asr

        self._transcriber = load_asr(model, device=device, cache_dir=cache_dir, progress=progress)
        self.name = f"faster-whisper:{self._transcriber.name}"

    def transcribe_take(self, samples, sample_rate, language):
        from audiobox.audio import Audio

        result = self._transcriber.transcribe(
            Audio(np.asarray(samples, dtype=np.float32), sample_rate),
            language=None if language == "auto" else language,
            word_timestamps=True,
        )
        words = [WordTiming(w.word, float(w.start), float(w.end), float(w.probability)) for w in result.words]
        return result.text.strip(), words


def load_transcriber(
    kind: str,
    *,
    language: str = "auto",
    whisper_model: str | None = None,
    device: str = "auto",
    cache_dir=None,
    progress: ProgressFn | None = None,
) -> TakeTranscriber | None:
    """'whisper' | 'sphinx' | 'none' | 'auto'; `progress` sees a Whisper model download.

    auto = faster-whisper (the better judge by far); for English, PocketSphinx when the Whisper model
    cannot be loaded (not downloaded and no hub), so English takes can still be checked offline.
    """
    if kind == "none":
        return None
    if kind == "sphinx":
        return SphinxTranscriber()
    if kind != "auto" or language != "english":
        return WhisperTranscriber(model=whisper_model, device=device, cache_dir=cache_dir, progress=progress)
    try:
        return WhisperTranscriber(model=whisper_model, device=device, cache_dir=cache_dir, progress=progress)
    except UserError as whisper_error:
        try:
            transcriber = SphinxTranscriber()
        except UserError:
            raise whisper_error from None
        log.warning("%s; checking English takes with PocketSphinx instead", whisper_error)
        return transcriber
