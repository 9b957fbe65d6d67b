"""Audio in and out: soundfile for the formats it knows, ffmpeg for the rest, soxr to resample.

Everything inside the toolbox is mono float32 numpy at an explicit sample rate.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiobox.errors import UserError
from audiobox.fsutil import atomic_path

TTS_SAMPLE_RATE = 24000
OUTPUT_FORMATS = ("wav", "flac", "mp3", "ogg")
_SOUNDFILE_FORMATS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}


@dataclass
class Audio:
    samples: np.ndarray  # mono float32
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / float(self.sample_rate) if self.sample_rate else 0.0


def require_ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if not exe:
        raise UserError("ffmpeg is not installed (apt-get install ffmpeg, or use the Docker image via ./run)")
    return exe


def to_mono(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples, dtype=np.float32)
    return samples.mean(axis=1).astype(np.float32) if samples.ndim == 2 else samples


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    if from_rate == to_rate:
        return np.asarray(samples, dtype=np.float32)
    import soxr

    return soxr.resample(np.asarray(samples, dtype=np.float32), from_rate, to_rate, quality="HQ").astype(
        np.float32
    )


def _decode_with_ffmpeg(path: Path, sample_rate: int | None, start: float | None, end: float | None) -> Audio:
    rate = sample_rate or TTS_SAMPLE_RATE
    cmd = [require_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error"]
    if start:
        cmd += ["-ss", f"{start:.3f}"]
    if end is not None:
        cmd += ["-to", f"{end:.3f}"] if not start else ["-t", f"{max(0.0, end - start):.3f}"]
    cmd += [
        "-i",
        str(path),
        "-vn",
        "-ac",
        "1",
        "-ar",
        str(rate),
        "-af",
        "aresample=resampler=soxr",
        "-f",
        "f32le",
        "-",
    ]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise UserError(f"cannot decode {path}: {detail[-1] if detail else 'ffmpeg failed'}")
    return Audio(np.frombuffer(proc.stdout, dtype=np.float32).copy(), rate)


def load_audio(
    path: str | Path, sample_rate: int | None = None, start: float | None = None, end: float | None = None
) -> Audio:
    """Decode any file ffmpeg reads (video included) to mono float32, optionally resampled/trimmed."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"audio file not found: {path}")
    if path.stat().st_size == 0:
        raise UserError(f"audio file is empty: {path}")
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:  # not a format libsndfile knows (video, m4a, opus...): let ffmpeg decode it
        info = None
    if info is None:
        audio = _decode_with_ffmpeg(path, sample_rate, start, end)
    else:
        first = int(round((start or 0.0) * info.samplerate))
        last = int(round(end * info.samplerate)) if end is not None else None
        data, rate = sf.read(str(path), start=first, stop=last, dtype="float32", always_2d=False)
        audio = Audio(to_mono(data), int(rate))
        if sample_rate:
            audio = Audio(resample(audio.samples, audio.sample_rate, sample_rate), sample_rate)
    if audio.samples.size == 0:
        raise UserError(f"no audio in {path}")
    return audio


def write_audio(path: str | Path, samples: np.ndarray, sample_rate: int, fmt: str | None = None) -> Path:
    """Write mono audio; the format comes from `fmt` or the file suffix (wav/flac/mp3/ogg)."""
    import soundfile as sf

    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".") or "wav").lower()
    if fmt not in _SOUNDFILE_FORMATS:
        raise UserError(f"unsupported output format {fmt!r} (choose from {', '.join(OUTPUT_FORMATS)})")
    container, subtype = _SOUNDFILE_FORMATS[fmt]
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), data, sample_rate, format=container, subtype=subtype)
    return path


def pcm16_bytes(samples: np.ndarray) -> bytes:
    """Little-endian 16-bit PCM of float samples in [-1, 1] (clipped)."""
    data = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    return (data * 32767.0).round().astype("<i2").tobytes()


def streaming_wav_header(sample_rate: int, channels: int = 1) -> bytes:
    """A 16-bit PCM WAV header for a stream of unknown length (sizes 0xFFFFFFFF, as players expect)."""
    import struct

    block = channels * 2
    return (
        b"RIFF"
        + struct.pack("<I", 0xFFFFFFFF)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block, block, 16)
        + b"data"
        + struct.pack("<I", 0xFFFFFFFF)
    )


def join_with_pauses(
    pieces: list[np.ndarray], sample_rate: int, pause_s: float = 0.3, crossfade_s: float = 0.01
) -> np.ndarray:
    """Concatenate pieces with a silence between them; short fades avoid clicks at the seams."""
    if not pieces:
        return np.zeros(0, dtype=np.float32)
    fade = max(1, int(crossfade_s * sample_rate))
    gap = np.zeros(int(pause_s * sample_rate), dtype=np.float32)
    out: list[np.ndarray] = []
    for i, piece in enumerate(pieces):
        piece = np.asarray(piece, dtype=np.float32).copy()
        n = min(fade, len(piece) // 2)
        if n:
            ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
            if i > 0:
                piece[:n] *= ramp
            if i < len(pieces) - 1:
                piece[-n:] *= ramp[::-1]
        if i > 0:
            out.append(gap)
        out.append(piece)
    return np.concatenate(out)
