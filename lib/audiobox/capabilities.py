"""What this installation can do: versions, cached models, and (with a probe) device facts."""

from __future__ import annotations

import platform
import shutil
from importlib import metadata

from audiobox import __version__
from audiobox.paths import Dirs
from audiobox.tts.models import DEFAULT_MODELS, cached_models

PACKAGES = (
    "qwen-tts",
    "torch",
    "transformers",
    "faster-whisper",
    "ctranslate2",
    "demucs",
    "silero-vad",
    "resemblyzer",
    "yt-dlp",
    "onnxruntime",
    "soundfile",
    "soxr",
    "flash-attn",
)


def package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def probe_runtime() -> dict:
    """Imports torch: only when asked for (--probe)."""
    import torch

    from audiobox.tts.runtime import resolve_attention, resolve_device, resolve_dtype

    device = resolve_device("auto")
    info = {
        "device": device,
        "dtype": resolve_dtype("auto", device),
        "attention": resolve_attention("auto", device),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["cuda_name"] = torch.cuda.get_device_name(0)
        info["cuda_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    return info


def collect(dirs: Dirs, probe: bool = False) -> dict:
    report = {
        "toolbox": {
            "version": __version__,
            "python": platform.python_version(),
            "cache": str(dirs.cache),
            "work": str(dirs.work),
        },
        "packages": package_versions(),
        "tools": {name: shutil.which(name) for name in ("ffmpeg", "ffprobe", "sox", "espeak-ng")},
        "default_models": DEFAULT_MODELS,
        "cached_models": cached_models(),
        "runtime": probe_runtime() if probe else "not probed (pass --probe)",
    }
    return report
