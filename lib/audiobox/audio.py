"""Audio in and out: soundfile for the formats it knows, ffmpeg for the rest, soxr to resample.

Everything inside the toolbox is mono float32 numpy at an explicit sample rate.

Decoding checks the header first (sample rate, channels, duration) and refuses absurd values before
allocating anything: a 40 KB WAV that declares 1 Hz would otherwise decode to gigabytes. Long files
are read block by block, downmixed and resampled as they stream, so the peak memory is the mono
result plus one block, not the whole file at its own rate and channel count.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiobox.errors import UserError
from audiobox.fsutil import atomic_path

TTS_SAMPLE_RATE = 24000
MIN_SAMPLE_RATE = 4000  # below any real recording; low rates multiply memory when resampled up
MAX_SAMPLE_RATE = 768_000
MAX_CHANNELS = 64
MAX_DECODE_S = 6 * 3600.0  # the longest stretch decoded at once unless a caller allows more
READ_BLOCK_S = 20.0
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


class BadHeader(UserError):
    """A file whose header declares what no real recording has (refused before decoding)."""


def check_header(path: Path, rate: float, channels: int, seconds: float, max_duration: float) -> None:
    """Refuse what a header declares before decoding it: absurd rates/channels, too long a stretch."""
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise BadHeader(
            f"{path.name} declares a sample rate of {rate:g} Hz "
            f"(supported: {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz); is the file damaged?"
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise BadHeader(f"{path.name} declares {channels} channels (supported: 1-{MAX_CHANNELS})")
    if seconds > max_duration:
        raise UserError(
            f"{path.name}: decoding {seconds / 3600:.1f} h at once is over the limit of "
            f"{max_duration / 3600:.1f} h; trim it with --start/--end"
        )


def ffprobe_audio(path: Path, entries: str) -> tuple[dict | None, str]:
    """ffprobe's JSON about the first audio stream, or None and ffprobe's last error line."""
    exe = shutil.which("ffprobe")
    if not exe:
        raise UserError("ffprobe is not installed (apt-get install ffmpeg)")
    cmd = [exe, "-v", "error", "-select_streams", "a:0", "-show_entries", entries, "-of", "json", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return None, (proc.stderr.strip().splitlines() or ["ffprobe failed"])[-1]
    return json.loads(proc.stdout or "{}"), ""


def _probe_stream(path: Path) -> tuple[float, int, float | None]:
    """(sample rate, channels, duration or None) of the first audio stream, read by ffprobe."""
    info, detail = ffprobe_audio(path, "stream=sample_rate,channels,duration:format=duration")
    streams = (info or {}).get("streams") or []
    if not streams:
        raise UserError(f"cannot decode {path}: {detail or 'no audio stream'}")
    stream = streams[0]
    duration = None
    for candidate in (stream.get("duration"), (info.get("format") or {}).get("duration")):
        try:
            duration = float(candidate)
            break
        except (TypeError, ValueError):
            pass
    return float(stream.get("sample_rate") or 0), int(stream.get("channels") or 0), duration


def _read_into(stream, expected: int) -> np.ndarray:
    """Read float32 samples from a pipe into one preallocated array (grown only if needed)."""
    out = np.empty(max(expected, 1024), dtype=np.float32)
    view = memoryview(out).cast("B")
    filled = 0
    while True:
        if filled == view.nbytes:
            out = np.resize(out, out.size * 2)
            view = memoryview(out).cast("B")
        got = stream.readinto(view[filled:])
        if not got:
            break
        filled += got
    return out[: filled // 4]


def _decode_with_ffmpeg(
    path: Path, sample_rate: int | None, start: float | None, end: float | None, max_duration: float
) -> Audio:
    rate = sample_rate or TTS_SAMPLE_RATE
    in_rate, channels, duration = _probe_stream(path)
    span = (end if end is not None else (duration or 0.0)) - (start or 0.0)
    check_header(path, in_rate, channels, span, max_duration)
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
    # ffmpeg's -t cuts a stream whose header lied about its length
    cmd[cmd.index("-vn") : cmd.index("-vn")] = ["-t", f"{max_duration:.3f}"]
    with tempfile.TemporaryFile() as err, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err) as proc:
        samples = _read_into(proc.stdout, int(max(span, 0.0) * rate) + rate)
        code = proc.wait()
        if code != 0:
            err.seek(0)
            detail = err.read().decode("utf-8", "replace").strip().splitlines()
            raise UserError(f"cannot decode {path}: {detail[-1] if detail else 'ffmpeg failed'}")
    return Audio(samples, rate)


def _read_with_soundfile(
    path: Path, sample_rate: int | None, start: float | None, end: float | None, max_duration: float
) -> Audio:
    import soundfile as sf

    with sf.SoundFile(str(path)) as fh:
        in_rate = fh.samplerate
        first = min(int(round((start or 0.0) * in_rate)), fh.frames)
        last = fh.frames if end is None else min(int(round(end * in_rate)), fh.frames)
        check_header(path, in_rate, fh.channels, max(0, last - first) / in_rate, max_duration)
        out_rate = sample_rate or in_rate
        out = np.empty(math.ceil(max(0, last - first) * out_rate / in_rate) + 64, dtype=np.float32)
        stream = None
        if out_rate != in_rate:
            import soxr

            stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")
        fh.seek(first)
        filled, left, block = 0, last - first, max(1, int(READ_BLOCK_S * in_rate))
        while True:
            data = fh.read(min(block, left), dtype="float32", always_2d=False) if left > 0 else np.zeros(0)
            left -= len(data)
            piece = to_mono(data)
            if stream is not None:
                piece = stream.resample_chunk(piece, last=left <= 0 or not len(data))
            if filled + len(piece) > out.size:
                out = np.resize(out, filled + len(piece))
            out[filled : filled + len(piece)] = piece
            filled += len(piece)
            if left <= 0 or not len(data):
                break
    return Audio(out[:filled], out_rate)


def load_audio(
    path: str | Path,
    sample_rate: int | None = None,
    start: float | None = None,
    end: float | None = None,
    max_duration: float = MAX_DECODE_S,
) -> Audio:
    """Decode any file ffmpeg reads (video included) to mono float32, optionally resampled/trimmed.

    The header is checked first; more than `max_duration` seconds at once is refused."""
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
    # MP3 too: libmpg123 inside libsndfile prints decoder complaints straight to the terminal when
    # it seeks; ffmpeg's messages are captured (and shown only when decoding fails)
    if info is None or info.format == "MP3":
        audio = _decode_with_ffmpeg(path, sample_rate, start, end, max_duration)
    else:
        audio = _read_with_soundfile(path, sample_rate, start, end, max_duration)
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
