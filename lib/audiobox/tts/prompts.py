"""Voice clone prompts stored as tensors (safetensors) + JSON: never pickle.

A prompt belongs to the model family it was built with (the talker's hidden size and codebook
layout); feeding it to another model is refused with a clear message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audiobox.errors import UserError
from audiobox.fsutil import atomic_write_bytes, atomic_write_json
from audiobox.paths import app_command
from audiobox.tts.models import ModelInfo

PROMPT_SCHEMA_VERSION = 1
# what a prompt file may hold: name -> (dtype, rank); anything else is refused on load and import
PROMPT_TENSORS = {"speaker_embedding": ("float32", 1), "ref_code": ("int64", 2)}


def check_prompt_files(tensor_bytes: bytes, meta_bytes: bytes, where: str) -> tuple[dict, dict]:
    """Parse a prompt's .safetensors + .json (never pickle) and check they hold what a prompt holds."""
    from safetensors.numpy import load

    try:
        tensors = load(tensor_bytes)
    except Exception as exc:
        raise UserError(f"{where} is not a safetensors prompt ({exc})") from None
    try:
        meta = json.loads(meta_bytes.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{where}: its .json is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("schema_version") != PROMPT_SCHEMA_VERSION:
        raise UserError(f"{where} has an unknown layout (schema_version {PROMPT_SCHEMA_VERSION} expected)")
    for name, array in tensors.items():
        dtype, rank = PROMPT_TENSORS.get(name, (None, None))
        if dtype is None:
            raise UserError(f"{where} holds an unexpected tensor {name!r}")
        if str(array.dtype) != dtype or array.ndim != rank:
            raise UserError(
                f"{where}: tensor {name!r} is {array.dtype} with {array.ndim} dims ({dtype}, {rank} expected)"
            )
    if "speaker_embedding" not in tensors or (not meta.get("x_vector_only") and "ref_code" not in tensors):
        raise UserError(f"{where} is missing tensors ({', '.join(PROMPT_TENSORS)} expected)")
    return tensors, meta


def check_prompt_model(built: dict, info: ModelInfo, slug: str = "SLUG") -> None:
    """Refuse a prompt (by the model record it was saved with) that `info`'s model cannot use."""
    built_with = built.get("fingerprint") or {}
    current = {k: v for k, v in info.fingerprint.items() if k != "tts_model_type"}
    mismatched = [k for k, v in current.items() if built_with.get(k) not in (None, v)]
    if info.model_type != "base" or mismatched:
        raise UserError(
            f"this voice prompt was built with {built.get('ref', 'another model')}; it cannot be used with "
            f"{info.ref} ({', '.join(mismatched) or 'not a Base model'} differ). Rebuild it with "
            f"`{app_command('voice-clone')} synth --voice {slug} --model {info.ref}`"
        )


@dataclass
class ClonePrompt:
    speaker_embedding: np.ndarray  # (D,) float32
    ref_code: np.ndarray | None  # (T, Q) int64; None in x-vector-only mode
    ref_text: str | None
    x_vector_only: bool
    model: dict = field(default_factory=dict)  # {ref, tag, model_type, fingerprint}

    @property
    def mode(self) -> str:
        return "xvec" if self.x_vector_only else "icl"

    @classmethod
    def from_items(cls, items: list, info: ModelInfo) -> ClonePrompt:
        item = items[0]
        code = item.ref_code
        return cls(
            speaker_embedding=item.ref_spk_embedding.detach().float().cpu().numpy().astype(np.float32),
            ref_code=None if code is None else code.detach().cpu().numpy().astype(np.int64),
            ref_text=item.ref_text,
            x_vector_only=bool(item.x_vector_only_mode),
            model={
                "ref": info.ref,
                "tag": info.tag,
                "model_type": info.model_type,
                "fingerprint": info.fingerprint,
            },
        )

    def to_items(self, device, dtype) -> list:
        import torch
        from qwen_tts import VoiceClonePromptItem

        code = None if self.ref_code is None else torch.from_numpy(self.ref_code).to(device)
        return [
            VoiceClonePromptItem(
                ref_code=code,
                ref_spk_embedding=torch.from_numpy(self.speaker_embedding).to(device=device, dtype=dtype),
                x_vector_only_mode=self.x_vector_only,
                icl_mode=not self.x_vector_only,
                ref_text=self.ref_text,
            )
        ]

    def check_compatible(self, info: ModelInfo, slug: str = "SLUG") -> None:
        check_prompt_model(self.model, info, slug)

    @staticmethod
    def files(stem: Path) -> tuple[Path, Path]:
        """<stem>.safetensors and <stem>.json. Prompt ids hold dots (qwen3-tts-12hz-0.6b-base_icl_v1): the
        suffix is appended, never swapped in (Path.with_suffix would cut the name at '.6b')."""
        return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")

    def save(self, stem: Path) -> tuple[Path, Path]:
        """Write <stem>.safetensors and <stem>.json atomically."""
        from safetensors.numpy import save

        tensors = {"speaker_embedding": np.ascontiguousarray(self.speaker_embedding)}
        if self.ref_code is not None:
            tensors["ref_code"] = np.ascontiguousarray(self.ref_code)
        tensor_path, meta_path = ClonePrompt.files(stem)
        atomic_write_bytes(
            tensor_path, save(tensors, metadata={"schema_version": str(PROMPT_SCHEMA_VERSION)})
        )
        atomic_write_json(
            meta_path,
            {
                "schema_version": PROMPT_SCHEMA_VERSION,
                "ref_text": self.ref_text,
                "x_vector_only": self.x_vector_only,
                "model": self.model,
            },
        )
        return tensor_path, meta_path

    @classmethod
    def load(cls, stem: Path) -> ClonePrompt:
        tensor_path, meta_path = ClonePrompt.files(stem)
        try:
            tensors, meta = check_prompt_files(
                tensor_path.read_bytes(), meta_path.read_bytes(), f"voice prompt {tensor_path.name}"
            )
        except FileNotFoundError as exc:
            raise UserError(f"voice prompt file missing: {exc.filename}") from exc
        return cls(
            speaker_embedding=tensors["speaker_embedding"],
            ref_code=tensors.get("ref_code"),
            ref_text=meta.get("ref_text"),
            x_vector_only=bool(meta.get("x_vector_only")),
            model=meta.get("model") or {},
        )
