"""`voice-synth speak --stream` / `--stdout`: the speak pipeline with audio written as it is made.

Same voice resolution, settings and metadata as :func:`audiobox.speak.run_speak`; the one take is
produced by :class:`audiobox.tts.stream.StreamEngine` and every decoded chunk goes straight to a
sink: the take file (flushed after each chunk, so it is a valid, growing file at every moment and
a killed run keeps what was spoken) or standard output (WAV with an open-ended header, or raw PCM).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from audiobox.audio import pcm16_bytes, streaming_wav_header
from audiobox.errors import UserError
from audiobox.languages import normalize_language
from audiobox.outputs import exact_run_dir, new_run_dir, take_filename
from audiobox.paths import Dirs
from audiobox.progress import ProgressFn, Reporter
from audiobox.speak import SpeakRequest, SpeakResult, prepare_speak, write_run

STDOUT_FORMATS = ("wav", "pcm")
FILE_FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS")}


class FileSink:
    """Writes chunks into the take file and flushes (the header is rewritten on every flush)."""

    def __init__(self, path: Path, fmt: str, sample_rate: int):
        import soundfile as sf

        if fmt not in FILE_FORMATS:
            raise UserError(f"--stream writes {', '.join(FILE_FORMATS)} files (not {fmt})")
        container, subtype = FILE_FORMATS[fmt]
        self.path = path
        self.file = sf.SoundFile(str(path), "w", sample_rate, 1, subtype, format=container)

    def write(self, samples: np.ndarray) -> None:
        self.file.write(np.clip(samples, -1.0, 1.0))
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class PipeSink:
    """Writes 16-bit PCM (optionally behind a WAV header of unknown length) to a binary stream."""

    def __init__(self, stream: BinaryIO, fmt: str, sample_rate: int):
        if fmt not in STDOUT_FORMATS:
            raise UserError(f"--stdout writes {' or '.join(STDOUT_FORMATS)} (not {fmt})")
        self.stream = stream
        self.path = None
        if fmt == "wav":
            stream.write(streaming_wav_header(sample_rate))

    def write(self, samples: np.ndarray) -> None:
        self.stream.write(pcm16_bytes(samples))
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


@dataclass
class StreamOutput:
    """Where the streamed take goes: a file in the run dir (fmt wav/flac/ogg) or a pipe."""

    fmt: str = "wav"
    pipe: BinaryIO | None = None


def run_speak_stream(
    request: SpeakRequest, dirs: Dirs, pool, output: StreamOutput, progress: ProgressFn | None = None
) -> SpeakResult:
    """Validate, load, stream one take into ``output``; write takes.meta.json with first-audio time."""
    from audiobox.tts.stream import StreamEngine, StreamJob, StreamOptions
    from audiobox.tts.synth import Take
    from audiobox.tts.text import chunk_text

    started = time.perf_counter()
    if request.variants != 1:
        raise UserError("--stream/--stdout speak one take: drop --variants")
    if output.pipe is None and output.fmt not in FILE_FORMATS:
        raise UserError(f"--stream writes {', '.join(FILE_FORMATS)} files (not {output.fmt})")
    if output.pipe is not None and output.fmt not in STDOUT_FORMATS:
        raise UserError(f"--stdout writes {' or '.join(STDOUT_FORMATS)} (not {output.fmt})")
    text, resolved, settings, settings_source, synth, spec, prompt_id = prepare_speak(request, dirs, pool)
    spec = synth.check_voice(spec)
    language = normalize_language(request.language, synth.info.languages)
    seed = request.seed if request.seed is not None else random.SystemRandom().randrange(2**31)
    pieces = chunk_text(text, language=language) if request.chunk else [text]
    run_dir = None
    if output.pipe is None:
        run_dir = (
            exact_run_dir(request.out_exact)
            if request.out_exact
            else new_run_dir(dirs.work, resolved.voice_id)
        )
        sink = FileSink(run_dir / take_filename(1, output.fmt), output.fmt, 24000)
    else:
        sink = PipeSink(output.pipe, output.fmt, 24000)
    engine = StreamEngine(synth, StreamOptions(max_batch=1))
    synth_started = time.perf_counter()
    first_audio = None
    audio: list[np.ndarray] = []
    chunk_meta = []
    gap = np.zeros(int(request.pause_s * 24000), dtype=np.float32)
    reporter = Reporter(progress)
    try:
        for index, piece in enumerate(pieces):
            piece_seed = seed + index
            budget = settings.budget_for(piece, language)
            reporter.start(
                "synthesize", budget, "frames", f"chunk {index + 1}/{len(pieces)}" if len(pieces) > 1 else ""
            )
            if index and len(gap):
                sink.write(gap)
                audio.append(gap)
            piece_started = time.perf_counter()
            handle = engine.submit(StreamJob(piece, spec, language, settings, piece_seed))
            piece_samples = 0
            for samples in handle:
                if first_audio is None:
                    first_audio = time.perf_counter() - synth_started
                sink.write(samples)
                audio.append(samples)
                piece_samples += len(samples)
                reporter.update("synthesize", handle.stats.frames)
            chunk_meta.append(
                {
                    "text": piece,
                    "seed": piece_seed,
                    "max_new_tokens": budget,
                    "synth_sec": round(time.perf_counter() - piece_started, 3),
                    "duration_sec": round(piece_samples / 24000, 3),
                    "finish": handle.stats.finish,
                }
            )
            reporter.end("synthesize", f"{piece_samples / 24000:.1f} s of audio")
    finally:
        sink.close()
        engine.close()
    synth_sec = time.perf_counter() - synth_started
    samples = np.concatenate(audio) if audio else np.zeros(0, dtype=np.float32)
    take = Take(
        index=1, samples=samples, sample_rate=24000, seed=seed, synth_sec=synth_sec, chunks=chunk_meta
    )
    timings = {
        "model_load_sec": synth.loaded.load_sec,
        "synth_sec": synth_sec,
        "first_audio_sec": first_audio if first_audio is not None else synth_sec,
    }
    if run_dir is None:  # piped: nothing is written to disk
        return SpeakResult(
            run_dir=None, files=[], meta_path=None, meta={"timings": timings, "seed": seed}, takes=[take]
        )
    files, meta_path, meta = write_run(
        run_dir,
        app=f"{request.app} --stream",
        synth=synth,
        takes=[take],
        voice_meta={"id": resolved.voice_id, "prompt_id": prompt_id, **resolved.meta},
        language=request.language,
        text=text,
        chunked=request.chunk,
        settings=settings,
        settings_source=settings_source,
        variants=1,
        fmt=output.fmt,
        timings=timings,
        started=started,
        files=[sink.path],
    )
    return SpeakResult(run_dir=run_dir, files=files, meta_path=meta_path, meta=meta, takes=[take])
