"""Audio chunks (float32, 24 kHz mono) to the bytes of an OpenAI ``response_format``, as they come.

wav and pcm at normal speed are framed here; every other format and any ``speed`` other than 1 go
through one ffmpeg process per response (fed from a thread, read as it encodes).
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterable, Iterator

import numpy as np

from audiobox.audio import pcm16_bytes, require_ffmpeg, streaming_wav_header

FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
_FFMPEG_OUTPUT = {
    "mp3": ["-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3"],
    "opus": ["-c:a", "libopus", "-b:a", "32k", "-f", "ogg"],
    "aac": ["-c:a", "aac", "-b:a", "64k", "-f", "adts"],
    "flac": ["-c:a", "flac", "-f", "flac"],
    "wav": ["-c:a", "pcm_s16le", "-f", "s16le"],  # raw out; the WAV header is ours (length unknown)
    "pcm": ["-c:a", "pcm_s16le", "-f", "s16le"],
}


def tempo_filter(speed: float) -> str:
    """An ffmpeg atempo chain for ``speed`` (each atempo stage takes 0.5..2)."""
    stages = []
    while speed < 0.5:
        stages.append(0.5)
        speed /= 0.5
    while speed > 2.0:
        stages.append(2.0)
        speed /= 2.0
    stages.append(speed)
    return ",".join(f"atempo={s:.6g}" for s in stages)


def encode_stream(
    chunks: Iterable[np.ndarray], fmt: str, speed: float = 1.0, sample_rate: int = 24000
) -> Iterator[bytes]:
    """Yield the encoded bytes of ``chunks`` as soon as the encoder gives them."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt}")
    if fmt == "wav":
        yield streaming_wav_header(sample_rate)
    if speed == 1.0 and fmt in ("wav", "pcm"):
        for chunk in chunks:
            yield pcm16_bytes(chunk)
        return
    command = [require_ffmpeg(), "-hide_banner", "-loglevel", "error", "-f", "s16le", "-ar", str(sample_rate)]
    command += ["-ac", "1", "-i", "pipe:0"]
    if speed != 1.0:
        command += ["-af", tempo_filter(speed)]
    command += [*_FFMPEG_OUTPUT[fmt], "-flush_packets", "1", "pipe:1"]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    failure: list[BaseException] = []

    def feed() -> None:
        try:
            for chunk in chunks:
                proc.stdin.write(pcm16_bytes(chunk))
                proc.stdin.flush()
        except (BrokenPipeError, ValueError):  # the reader went away and killed ffmpeg
            pass
        except BaseException as exc:  # generation failed: end the encoder, report it below
            failure.append(exc)
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass

    writer = threading.Thread(target=feed, name="encode-feed", daemon=True)
    writer.start()
    try:
        while True:
            data = os.read(proc.stdout.fileno(), 1 << 16)
            if not data:
                break
            yield data
        writer.join()
        if failure:
            raise failure[0]
        if proc.wait() != 0:
            message = proc.stderr.read().decode(errors="replace").strip().splitlines()
            raise RuntimeError(f"ffmpeg failed to encode {fmt}: {message[-1] if message else 'no message'}")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
