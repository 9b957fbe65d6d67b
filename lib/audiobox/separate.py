"""Vocals extraction with Demucs, in-process, the model loaded once per process.

Model sources, in order:
  * `--demucs-repo DIR`: a local model repo. Either the Hugging Face layout that demucs 4.1 uses
    (`<name>.yaml` + `<sig>.safetensors`, no pickle; tests/fixtures/tiny_demucs.py writes one) or
    the classic layout (`<name>.yaml` + `<sig>-<sha>.th`, read by demucs's own loader).
  * otherwise the Hugging Face cache under `<cache>/huggingface` (what demucs downloads).
  * otherwise a download from the hub or the HF_ENDPOINT mirror, but only when audiobox.hub says it
    can be reached: offline it fails at once with the way out instead of demucs's ~25 s of retries.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audiobox import hub
from audiobox.errors import UserError
from audiobox.progress import ProgressEvent, ProgressFn

DEFAULT_SEPARATOR_MODEL = "htdemucs"
HF_NAMESPACE = "adefossez"


@dataclass(frozen=True)
class SeparatorOptions:
    model: str = DEFAULT_SEPARATOR_MODEL
    repo: Path | None = None  # --demucs-repo
    device: str = "cpu"
    shifts: int = 0  # random time shifts averaged by demucs (0 = one pass, fastest)
    overlap: float = 0.25
    threads: int | None = None  # torch intra-op threads; None = leave as is


@dataclass
class LoadedSeparator:
    """A Demucs model ready to run; `fingerprint` identifies the weights (for cache keys)."""

    model: Any
    name: str
    fingerprint: str
    samplerate: int
    audio_channels: int
    vocals_index: int
    device: str
    options: SeparatorOptions
    load_s: float

    def vocals(self, samples: np.ndarray, sample_rate: int, progress: ProgressFn | None = None) -> np.ndarray:
        """Mono vocals at `sample_rate` for a mono float32 signal; `progress` gets "separate" events
        (seconds of `samples` done)."""
        import torch
        from demucs.apply import apply_model

        from audiobox.audio import resample

        mono = resample(np.asarray(samples, dtype=np.float32), sample_rate, self.samplerate)
        if mono.size == 0:
            return np.zeros(0, dtype=np.float32)
        wav = torch.from_numpy(np.ascontiguousarray(mono)).unsqueeze(0).repeat(self.audio_channels, 1)
        ref = wav.mean(0)
        mean, std = ref.mean(), ref.std()
        std = std if float(std) > 1e-8 else torch.tensor(1.0)
        wav = (wav - mean) / std

        length = wav.shape[-1]
        segment = float(getattr(self.model, "segment", 7.8) or 7.8) * self.samplerate
        n_models = len(getattr(self.model, "models", [None]))

        seconds = len(samples) / sample_rate

        def callback(info: dict) -> None:
            if progress and info.get("state") == "end":
                within = min(1.0, (float(info.get("segment_offset", 0)) + segment) / max(1, length))
                share = min(1.0, (int(info.get("model_idx_in_bag", 0)) + within) / n_models)
                progress(ProgressEvent("separate", done=share * seconds, total=seconds, unit="s"))

        with torch.inference_mode():
            out = apply_model(
                self.model,
                wav[None],
                shifts=self.options.shifts,
                split=True,
                overlap=self.options.overlap,
                progress=False,
                device=self.device,
                callback=callback if progress else None,
            )[0]
        voc = (out[self.vocals_index] * std + mean).mean(0).cpu().numpy().astype(np.float32)
        return resample(voc, self.samplerate, sample_rate)


_LOADED: dict[tuple, LoadedSeparator] = {}


def _fingerprint_files(files: list[Path], extra: str) -> str:
    digest = hashlib.sha256(extra.encode())
    for f in sorted(files):
        digest.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _load_from_repo(name: str, repo: Path) -> tuple[Any, list[Path]]:
    import yaml

    if not repo.is_dir():
        raise UserError(f"--demucs-repo {repo} is not a directory")
    yaml_file = repo / f"{name}.yaml"
    if yaml_file.is_file():
        bag = yaml.safe_load(yaml_file.read_text()) or {}
        sigs = [str(s) for s in bag.get("models") or []]
        if not sigs:
            raise UserError(f"{yaml_file} lists no models")
    else:
        sigs, bag = [name], {}
    models, files = [], [yaml_file] if yaml_file.is_file() else []
    for sig in sigs:
        st = repo / f"{sig}.safetensors"
        th = sorted(repo.glob(f"{sig}-*.th")) + (
            [repo / f"{sig}.th"] if (repo / f"{sig}.th").is_file() else []
        )
        if st.is_file():
            from demucs.hf import load_safetensors_model

            models.append(load_safetensors_model(st))
            files.append(st)
        elif th:
            from demucs.pretrained import get_model

            # the classic demucs checkpoint format; demucs's own loader checks its checksum
            models.append(get_model(sig, repo=repo))
            files.append(th[0])
        else:
            known = sorted(
                {p.stem.split("-")[0] for p in repo.iterdir() if p.suffix in (".yaml", ".safetensors", ".th")}
            )
            raise UserError(
                f"Demucs model {name!r} (signature {sig}) not found in {repo}; "
                f"it holds: {', '.join(known) or 'nothing'}"
            )
    from demucs.apply import BagOfModels

    if len(models) == 1 and not bag.get("weights") and not bag.get("segment"):
        return models[0], files
    return BagOfModels(models, bag.get("weights"), bag.get("segment")), files


def _hf_repo_id(name: str) -> str:
    from demucs.hf import hf_repo_name

    namespace, _, short = name.rpartition("/")
    return f"{namespace or HF_NAMESPACE}/{hf_repo_name(short)}"


def hub_model_files(name: str, download: bool, progress: ProgressFn | None = None) -> list[Path] | None:
    """The bag yaml and weight files of a Demucs hub model, from the cache (no network at all when
    it is complete). Missing files are downloaded when `download` and the hub (audiobox.hub) can be
    reached; without `download` a missing file gives None."""
    import yaml

    repo_id = _hf_repo_id(name)

    def fetch(filename: str) -> Path | None:
        try:
            return hub.file(repo_id, filename, local_only=True)
        except Exception:
            if not download:
                return None
        hub.require_download(
            "Demucs model", name, hub.cache_dir(), "pass --demucs-repo DIR with local model files"
        )
        try:
            return hub.file(repo_id, filename, local_only=False, progress=progress)
        except Exception as exc:
            raise UserError(
                f"cannot download Demucs model {name!r} from {repo_id}: {type(exc).__name__}: {exc}"
            ) from None

    yaml_path = fetch(f"{name.rpartition('/')[2]}.yaml")
    if yaml_path is None:
        return None
    files = [yaml_path]
    for sig in (yaml.safe_load(yaml_path.read_text()) or {}).get("models") or []:
        path = fetch(f"{sig}.safetensors")
        if path is None:
            return None
        files.append(path)
    return files


def _load_from_hub(name: str, progress: ProgressFn | None = None) -> tuple[Any, list[Path]]:
    import yaml
    from demucs.apply import BagOfModels
    from demucs.hf import load_safetensors_model

    files = hub_model_files(name, download=True, progress=progress)
    bag = yaml.safe_load(files[0].read_text()) or {}
    models = [load_safetensors_model(path) for path in files[1:]]
    return BagOfModels(models, bag.get("weights"), bag.get("segment")), files


def load_separator(
    options: SeparatorOptions = SeparatorOptions(), progress: ProgressFn | None = None
) -> LoadedSeparator:
    """Load (once per process) the Demucs model named in `options`; a download shows on `progress`."""
    key = (options.model, str(options.repo) if options.repo else None, options.device)
    if key in _LOADED:
        loaded = _LOADED[key]
        loaded.options = options
        return loaded
    t0 = time.monotonic()
    import torch

    if options.threads:
        torch.set_num_threads(int(options.threads))
    if options.repo is not None:
        model, files = _load_from_repo(options.model, Path(options.repo).expanduser())
    else:
        model, files = _load_from_hub(options.model, progress)
    model.eval()
    sources = list(getattr(model, "sources", []))
    if "vocals" not in sources:
        raise UserError(f"Demucs model {options.model!r} has no vocals stem (stems: {', '.join(sources)})")
    if options.device != "cpu":
        model.to(options.device)
    loaded = LoadedSeparator(
        model=model,
        name=options.model,
        fingerprint=_fingerprint_files(files, options.model),
        samplerate=int(model.samplerate),
        audio_channels=int(model.audio_channels),
        vocals_index=sources.index("vocals"),
        device=options.device,
        options=options,
        load_s=time.monotonic() - t0,
    )
    _LOADED[key] = loaded
    return loaded
