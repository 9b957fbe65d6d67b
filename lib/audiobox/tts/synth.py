"""Speaking text with a loaded model: clone prompts, built-in speakers or designed voices.

Variants of one text are generated in one batched call (not N sequential calls); long text is
chunked at sentence boundaries, each chunk with its own token budget and seed.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field

import numpy as np

from audiobox.audio import Audio, join_with_pauses
from audiobox.errors import UserError
from audiobox.languages import normalize_language
from audiobox.progress import ProgressFn, Reporter, relabel
from audiobox.tts.models import require_type
from audiobox.tts.prompts import ClonePrompt
from audiobox.tts.runtime import LoadedTTS, quiet_stdout
from audiobox.tts.settings import GenerationSettings
from audiobox.tts.text import chunk_text, clean_text

log = logging.getLogger(__name__)

REF_TAIL_SILENCE_S = 0.5  # Qwen3-TTS tends to echo the end of a reference that stops abruptly
BACKENDS = ("auto", "upstream", "fast")


@dataclass(frozen=True)
class VoiceSpec:
    """Who speaks: a clone prompt, a built-in speaker (+ instruct), or a voice description."""

    kind: str  # clone | speaker | design
    prompt: ClonePrompt | None = None
    speaker: str | None = None
    instruct: str | None = None

    @classmethod
    def clone(cls, prompt: ClonePrompt) -> VoiceSpec:
        return cls("clone", prompt=prompt)

    @classmethod
    def builtin(cls, speaker: str, instruct: str | None = None) -> VoiceSpec:
        return cls("speaker", speaker=speaker, instruct=instruct or None)

    @classmethod
    def design(cls, instruct: str) -> VoiceSpec:
        if not instruct or not instruct.strip():
            raise UserError("a voice design needs a description (--instruct)")
        return cls("design", instruct=instruct.strip())


@dataclass
class Take:
    index: int  # 1-based
    samples: np.ndarray
    sample_rate: int
    seed: int
    synth_sec: float  # wall time of the calls that produced it, shared equally within a batch
    chunks: list[dict] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.samples) / float(self.sample_rate)

    @property
    def rtf(self) -> float:
        return self.synth_sec / self.duration if self.duration else float("inf")


class Synthesizer:
    """One loaded model, reused for every call of a run."""

    def __init__(self, loaded: LoadedTTS, backend: str = "auto"):
        self.loaded = loaded
        self.info = loaded.info
        self.backend_name, self.generator = self._pick_backend(backend)

    @property
    def seeds_per_row(self) -> bool:
        """True when one batched `generate` call can give each row its own seed."""
        return self.backend_name == "fast"

    def _pick_backend(self, backend: str):
        if backend not in BACKENDS:
            raise UserError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
        if backend != "upstream":
            try:
                from audiobox.tts.fastpath import FastGenerator
            except ImportError:
                FastGenerator = None
            if FastGenerator is not None and FastGenerator.supports(self.loaded.model):
                return "fast", FastGenerator(self.loaded.model)
            if backend == "fast":
                raise UserError("the fast backend does not support this model/device; use --backend upstream")
        return "upstream", self.loaded.model

    # -- prompts ---------------------------------------------------------------------------
    def build_clone_prompt(
        self, ref: Audio, ref_text: str | None, x_vector_only: bool = False
    ) -> ClonePrompt:
        require_type(self.info, "base", "building a clone prompt")
        if not x_vector_only and not (ref_text and ref_text.strip()):
            raise UserError("a transcript of the reference is needed (or use x-vector-only mode)")
        tail = np.zeros(int(REF_TAIL_SILENCE_S * ref.sample_rate), dtype=np.float32)
        samples = np.concatenate([np.asarray(ref.samples, dtype=np.float32), tail])
        with quiet_stdout():
            items = self.loaded.model.create_voice_clone_prompt(
                ref_audio=(samples, ref.sample_rate),
                ref_text=None if x_vector_only else ref_text.strip(),
                x_vector_only_mode=x_vector_only,
            )
        return ClonePrompt.from_items(items, self.info)

    # -- generation ------------------------------------------------------------------------
    def check_voice(self, voice: VoiceSpec) -> VoiceSpec:
        if voice.kind == "clone":
            require_type(self.info, "base", "speaking with a cloned voice")
            voice.prompt.check_compatible(self.info)
            return voice
        if voice.kind == "speaker":
            require_type(self.info, "custom_voice", "speaking with a built-in speaker")
            speaker = self.info.canonical_speaker(voice.speaker)
            if voice.instruct and not self.info.supports_instruct:
                log.warning(
                    "%s ignores instructions (only 1.7B CustomVoice models follow them)", self.info.ref
                )
            return VoiceSpec.builtin(speaker, voice.instruct)
        require_type(self.info, "voice_design", "designing a voice")
        return voice

    def upstream_call(
        self, texts: list[str], voices: list[VoiceSpec], language: str, settings: GenerationSettings
    ) -> tuple[str, list, dict]:
        """The qwen_tts method, its positional and its keyword arguments for one batched call in
        which row i speaks texts[i] with voices[i] (shared by whole takes and the stream engine)."""
        lang = None if language == "auto" else language
        gen = settings.generate_kwargs(max(texts, key=len), language)
        kind = voices[0].kind
        if any(v.kind != kind for v in voices):
            raise ValueError("one batched call takes one kind of voice")
        languages = [lang or "Auto"] * len(texts)
        if kind == "clone":
            device, dtype = self.loaded.model.device, self.loaded.model.model.dtype
            items = [it for v in voices for it in v.prompt.to_items(device, dtype)]
            return "generate_voice_clone", [texts], dict(language=languages, voice_clone_prompt=items, **gen)
        if kind == "speaker":
            return (
                "generate_custom_voice",
                [texts],
                dict(
                    speaker=[v.speaker for v in voices],
                    language=languages,
                    instruct=[v.instruct or "" for v in voices],
                    **gen,
                ),
            )
        return (
            "generate_voice_design",
            [texts],
            dict(instruct=[v.instruct for v in voices], language=languages, **gen),
        )

    def generate(
        self,
        texts: list[str],
        voices: list[VoiceSpec],
        language: str,
        settings: GenerationSettings,
        seed: int | list[int],
        progress: ProgressFn | None = None,
    ) -> tuple[list[np.ndarray], int]:
        """One batched model call: row i speaks texts[i] with voices[i]; `progress` gets a
        "synthesize" event per frame (fast backend; upstream's loop reports nothing).

        `seed`: one for the call, or one per row (`seeds_per_row` backends only): row i then draws
        its random numbers from its own generator seeded seeds[i], and stops at its own text's token
        budget, as it would alone."""
        import torch

        method, args, kwargs = self.upstream_call(texts, voices, language, settings)
        seeds = [seed] * len(texts) if isinstance(seed, int) else list(seed)
        if self.backend_name == "fast":
            if progress is not None:
                kwargs["progress"] = progress
            device = self.loaded.model.device
            kwargs["generators"] = [torch.Generator(device=device).manual_seed(s) for s in seeds]
            kwargs["budgets"] = [settings.budget_for(text, language) for text in texts]
            kwargs["max_new_tokens"] = max(kwargs["budgets"])
        elif len(set(seeds)) > 1:
            raise ValueError("one seed per row needs the fast backend")
        torch.manual_seed(seeds[0])
        with quiet_stdout(), torch.inference_mode():
            wavs, rate = getattr(self.generator, method)(*args, **kwargs)
        return [np.asarray(w, dtype=np.float32).reshape(-1) for w in wavs], int(rate)

    def speak(
        self,
        text: str,
        voice: VoiceSpec,
        language: str = "auto",
        settings: GenerationSettings = GenerationSettings(),
        variants: int = 1,
        seed: int | None = None,
        chunk: bool = False,
        pause_s: float = 0.3,
        crossfade_s: float = 0.01,
        progress: ProgressFn | None = None,
    ) -> list[Take]:
        """Speak `text` `variants` times; returns the takes in order. `progress` gets a "synthesize"
        stage per chunk (frames out of the chunk's budget; it ends early at end of speech)."""
        if variants < 1 or variants > 16:
            raise UserError("--variants must be between 1 and 16")
        text = clean_text(text)
        language = normalize_language(language, self.info.languages)
        voice = self.check_voice(voice)
        base_seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
        chunks = chunk_text(text, language=language) if chunk else [text]
        takes = []
        reporter = Reporter(progress)
        for v in range(variants):
            # take v is generated alone with seed base+v (chunk c with base+v+c), so `--seed <a take's
            # seed>` alone reproduces that take; rows of one batched call could not be re-made singly
            take_seed = base_seed + v
            pieces: list[np.ndarray] = []
            chunk_meta: list[dict] = []
            rate = 24000
            elapsed = 0.0
            for c, piece in enumerate(chunks):
                chunk_seed = take_seed + c
                budget = settings.budget_for(piece, language)
                label = " ".join(
                    ([f"take {v + 1}/{variants}"] if variants > 1 else [])
                    + ([f"chunk {c + 1}/{len(chunks)}"] if len(chunks) > 1 else [])
                )
                reporter.start("synthesize", budget, "frames", label)
                started = time.perf_counter()
                (wav,), rate = self.generate(
                    [piece],
                    [voice],
                    language,
                    settings,
                    chunk_seed,
                    progress=relabel(progress, total=budget, message=label),
                )
                spent = time.perf_counter() - started
                elapsed += spent
                reporter.end("synthesize", f"{len(wav) / rate:.1f} s of audio")
                pieces.append(wav)
                chunk_meta.append(
                    {
                        "text": piece,
                        "seed": chunk_seed,
                        "max_new_tokens": budget,
                        "synth_sec": round(spent, 3),
                        "duration_sec": round(len(wav) / rate, 3),
                    }
                )
            takes.append(
                Take(
                    index=v + 1,
                    samples=join_with_pauses(pieces, rate, pause_s, crossfade_s)
                    if len(chunks) > 1
                    else pieces[0],
                    sample_rate=rate,
                    seed=take_seed,
                    synth_sec=elapsed,
                    chunks=chunk_meta,
                )
            )
        return takes
