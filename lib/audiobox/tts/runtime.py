"""Loading Qwen3-TTS on the right device, dtype and attention kernel.

torch and qwen_tts are imported inside these functions only: the CLI stays fast for metadata.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from dataclasses import dataclass

from audiobox import hub
from audiobox.errors import UserError
from audiobox.progress import ProgressFn
from audiobox.tts.models import DEFAULT_MODELS, ModelInfo, read_model_info

QWEN_LOG = logging.getLogger("audiobox.tts.qwen_tts")  # what qwen_tts prints, one warning per line
DTYPES = ("auto", "float32", "bfloat16", "float16", "int8")
ATTENTIONS = ("auto", "sdpa", "eager", "flash_attention_2")


@dataclass(frozen=True)
class RuntimeOptions:
    device: str = "auto"  # auto | cpu | cuda | cuda:N   (TORCH_DEVICE overrides auto)
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16 | int8 (CPU, opt-in)
    attention: str = "auto"  # auto | sdpa | eager | flash_attention_2
    threads: int | None = None


@dataclass
class LoadedTTS:
    """A loaded model and how it was loaded (recorded in every take's metadata)."""

    model: object  # qwen_tts.Qwen3TTSModel
    info: ModelInfo
    device: str
    dtype: str
    attention: str
    load_sec: float
    weights: str = "as loaded"  # or "onednn-packed" (bf16 on CPU) or "dynamic-int8"


class _PrintsToLog(io.TextIOBase):
    """A text stream that turns each line printed into it into a warning on `logger`."""

    def __init__(self, logger: logging.Logger):
        self.logger = logger
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        if self._partial:
            self._emit(self._partial)
            self._partial = ""

    def _emit(self, line: str) -> None:
        line = line.strip()
        if line.strip("*").strip():  # not a blank or a row of stars framing a banner
            self.logger.warning(line.removeprefix("[WARNING]").strip())


@contextlib.contextmanager
def quiet_stdout():
    """qwen_tts reports with print() (e.g. a reference louder than full scale): inside its calls each
    printed line becomes a warning of the "audiobox.tts.qwen_tts" logger, as the library's own warnings,
    so stdout stays clean for --json/--stdout output and a server or a test sees them too."""
    stream = _PrintsToLog(QWEN_LOG)
    try:
        with contextlib.redirect_stdout(stream):
            yield
    finally:
        stream.flush()


def resolve_device(requested: str = "auto") -> str:
    import torch

    wanted = os.environ.get("TORCH_DEVICE", "") if requested == "auto" else requested
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {wanted!r} requested but CUDA is not available (use --device cpu)")
    if wanted:
        return wanted
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(requested: str, device: str) -> str:
    """auto: bf16 on SM>=8, fp16 on SM7.x, fp32 on older GPUs; on CPU bf16 only with native support."""
    if requested != "auto":
        if requested not in DTYPES:
            raise UserError(f"unknown dtype {requested!r} (choose from {', '.join(DTYPES)})")
        if requested == "int8" and device != "cpu":
            raise UserError(
                "--dtype int8 is a CPU option (dynamic int8 matrix products); use bfloat16 on GPUs"
            )
        if requested == "float16" and device == "cpu":
            raise UserError("--dtype float16 is for GPUs; on CPU use bfloat16, float32 or int8")
        return requested
    if device.startswith("cuda"):
        import torch

        major, _ = torch.cuda.get_device_capability(torch.device(device))
        return "bfloat16" if major >= 8 else "float16" if major == 7 else "float32"
    return cpu_default_dtype()


def cpu_default_dtype() -> str:
    from audiobox.tts.cpu import resolve_cpu_dtype

    return resolve_cpu_dtype()


def flash_attn_usable() -> bool:
    try:
        import flash_attn  # noqa: F401  (the import itself is the check)
    except Exception:  # missing, or an ABI mismatch that raises on import
        return False
    return True


def resolve_attention(requested: str, device: str) -> str:
    if requested not in ATTENTIONS:
        raise UserError(f"unknown attention {requested!r} (choose from {', '.join(ATTENTIONS)})")
    if requested == "flash_attention_2" and not (device.startswith("cuda") and flash_attn_usable()):
        raise UserError("flash_attention_2 needs CUDA and an importable flash_attn package")
    if requested != "auto":
        return requested
    return "flash_attention_2" if device.startswith("cuda") and flash_attn_usable() else "sdpa"


def ensure_available(info: ModelInfo) -> None:
    """Fail in seconds, with the way out, when a hub model is neither cached nor downloadable."""
    if info.path is None:
        hub.require_download(
            "model", info.ref, hub.cache_dir(), "copy the model dir here and pass --model DIR"
        )


def prepare_process(threads: int | None, device: str, dtype: str) -> None:
    """Explicit --threads wins; on CPU the default follows the measured rule in tts.cpu, and the
    process gets the CPU settings of tts.cpu.prepare_cpu_process."""
    import torch

    if device == "cpu":
        from audiobox.tts.cpu import prepare_cpu_process, recommended_threads

        prepare_cpu_process()
        threads = threads or recommended_threads(dtype)
    if threads:
        torch.set_num_threads(threads)


def checkpoint_load_dtype(dtype: str) -> str:
    """The torch dtype to load a checkpoint in for a resolved ``--dtype``.

    int8 quantizes a float32 talker, but the codec decoder (a third of an int8 run when it is
    float32) stays in the checkpoint's bf16 where the CPU computes bf16 natively.
    """
    if dtype != "int8":
        return dtype
    from audiobox.tts.cpu import has_native_bf16

    return "bfloat16" if has_native_bf16() else "float32"


def load_tts(
    model_ref: str | None,
    options: RuntimeOptions = RuntimeOptions(),
    kind: str = "base",
    progress: ProgressFn | None = None,
) -> LoadedTTS:
    """Load a Qwen3-TTS checkpoint by hub id or local dir (default: the default model of `kind`).

    A hub model that is not cached yet is downloaded first, as a "download" stage on `progress`."""
    info = read_model_info(model_ref or DEFAULT_MODELS[kind])
    ensure_available(info)
    snapshot = hub.snapshot(info.ref, progress=progress) if info.path is None else None  # not cached
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # drop the flash-attn banner qwen_tts prints on import
        from qwen_tts import Qwen3TTSModel
    with quiet_stdout():
        import torch
        import transformers

        transformers.logging.set_verbosity_error()
        device = resolve_device(options.device)
        dtype = resolve_dtype(options.dtype, device)
        attention = resolve_attention(options.attention, device)
        prepare_process(options.threads, device, dtype)
        source = str(info.path or snapshot or info.ref)
        try:
            model = Qwen3TTSModel.from_pretrained(
                source,
                dtype=getattr(torch, checkpoint_load_dtype(dtype)),
                device_map=device,
                attn_implementation=attention,
            )
        except OSError as exc:
            raise UserError(f"cannot load model {info.ref}: {str(exc).splitlines()[0]}") from exc
        weights = "as loaded"
        if device == "cpu" and dtype == "int8":
            from audiobox.tts.weights import quantize_int8

            quantize_int8(model)
            weights = f"dynamic-int8, {checkpoint_load_dtype(dtype)} codec"
        elif device == "cpu" and dtype == "bfloat16":
            from audiobox.tts.weights import pack_bf16

            weights = "onednn-packed" if pack_bf16(model) else weights
    return LoadedTTS(
        model=model,
        info=info,
        device=device,
        dtype=dtype,
        attention=attention,
        load_sec=time.perf_counter() - started,
        weights=weights,
    )
