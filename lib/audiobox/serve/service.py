"""What the HTTP layer calls: speech requests onto shared stream engines, and the voice registry.

One :class:`StreamEngine` per loaded checkpoint; every request becomes a row of its running decode
loop, so concurrent requests are batched into the same model steps.  Voices are resolved with the
same library code as ``voice-synth speak`` (registry voices, built-in speakers, styles, tones).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiobox.errors import UserError
from audiobox.languages import normalize_language
from audiobox.serve.config import ServeConfig
from audiobox.speak import SpeakRequest, resolve_voice
from audiobox.tts.models import read_model_info
from audiobox.tts.settings import resolve_settings
from audiobox.voices import VoiceRegistry


class ApiError(Exception):
    """An error the client caused or can act on; becomes an OpenAI-shaped JSON body."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


@dataclass
class SpeechOrder:
    """A validated /v1/audio/speech request (the HTTP layer checked types and ranges)."""

    model: str
    text: str
    voice: str
    instructions: str | None = None
    style: str | None = None
    tone: str | None = None
    language: str = "auto"
    seed: int | None = None
    variants: int = 1


@dataclass
class PlannedSpeech:
    """A resolved request: which engine, which jobs (one per variant)."""

    engine: object
    jobs: list
    voice_id: str
    reference: object = None  # the voice's reference audio, for select_best's similarity check


class SpeechService:
    def __init__(self, config: ServeConfig):
        self.config = config
        self.registry = VoiceRegistry(config.dirs.voices)
        self._lock = threading.Lock()
        self._engines: dict[str, object] = {}
        self._pool = None
        self._judge = None

    # ------------------------------------------------------------------ voices
    def builtin_speakers(self) -> list[str]:
        try:
            return read_model_info(self.config.models["custom_voice"]).speakers
        except UserError:
            return []

    def list_voices(self) -> list[dict]:
        voices, _problems = self.registry.list()
        items = [voice_object(v.summary()) for v in voices]
        taken = {item["id"] for item in items}
        items += [builtin_object(name) for name in self.builtin_speakers() if name not in taken]
        return items

    def get_voice(self, voice_id: str) -> dict:
        if self.registry.exists(voice_id):
            return voice_object(self.registry.get(voice_id).summary())
        if voice_id.lower() in self.builtin_speakers():
            return builtin_object(voice_id.lower())
        raise ApiError(404, f"voice {voice_id!r} not found", "voice_not_found", "voice")

    def create_voice(self, name: str, clip: Path, filename: str, transcript: str | None, language: str):
        """A clone voice from an uploaded clip, through voice-clone's own workflow (`clone.clone`):
        the same reference choice and quality gate (a refused clip is a 400 with the reason),
        transcription unless a transcript came with it, the prompt built with the served Base
        model, voice + prompt registered in one transaction."""
        from audiobox.clone import CloneRequest, clone
        from audiobox.refprep import RefOptions
        from audiobox.voices import validate_slug

        validate_slug(name)
        if self.registry.exists(name):
            raise ApiError(
                409, f"voice {name!r} already exists (delete it first or pick another name)", "voice_exists"
            )
        transcript = " ".join((transcript or "").split()) or None
        base = self.config.models["base"]
        self.engine_for(base, "base")  # the served Base model: loaded once, shared with its stream engine
        request = CloneRequest(
            ref_audio=clip,
            ref_source={"type": "upload", "filename": filename},
            ref=RefOptions(
                ref_text=transcript, language=normalize_language(language), asr_model=self.config.asr_model
            ),
            voice_name=name,
            display_name=name,
            model=base,
        )
        clone(request, self.config.dirs, self._pool)
        return self.get_voice(name)

    # ------------------------------------------------------------------ speech
    def plan(self, order: SpeechOrder) -> PlannedSpeech:
        """Resolve the voice, load (once) the model it needs, and build the stream jobs."""
        from audiobox.tts.stream import StreamJob
        from audiobox.tts.synth import VoiceSpec
        from audiobox.tts.text import clean_text

        if order.model not in self.config.model_ids:
            raise ApiError(
                400,
                f"model {order.model!r} is not served here (choose from {', '.join(self.config.model_ids)})",
                "model_not_found",
                "model",
            )
        is_voice = self.registry.exists(order.voice)
        speakers = self.builtin_speakers()
        if not is_voice and order.voice.lower() not in speakers:
            choices = [v["id"] for v in self.list_voices()]
            raise ApiError(
                400,
                f"voice {order.voice!r} is neither a registered voice nor a built-in speaker "
                f"(choose from {', '.join(choices) or 'none'})",
                "voice_not_found",
                "voice",
            )
        request = SpeakRequest(
            text=clean_text(order.text),
            voice=order.voice if is_voice else None,
            speaker=None if is_voice else order.voice.lower(),
            instruct=order.instructions or None,
            instruct_style=order.style,
            tone=order.tone,
            language=order.language,
            model=None if is_voice else self.config.models["custom_voice"],
        )
        resolved = resolve_voice(request, self.registry)
        settings, _ = resolve_settings(None, resolved.defaults)
        engine = self.engine_for(resolved.model_ref, resolved.model_kind)
        synth = engine.synth
        if resolved.kind == "clone":
            prompt, _ = self.registry.load_prompt(order.voice, synth.info, order.tone)
            spec = VoiceSpec.clone(prompt)
        else:
            spec = VoiceSpec.builtin(**resolved.spec_args)
        language = normalize_language(order.language, synth.info.languages)
        seed = order.seed if order.seed is not None else random.SystemRandom().randrange(2**31)
        jobs = [StreamJob(request.text, spec, language, settings, seed + i) for i in range(order.variants)]
        reference = None
        if is_voice and order.variants > 1:
            reference = self._reference(order.voice)
        return PlannedSpeech(engine=engine, jobs=jobs, voice_id=resolved.voice_id, reference=reference)

    def engine_for(self, model_ref: str, kind: str):
        """The stream engine of a checkpoint, loading it on first use (one load, shared)."""
        from audiobox.tts.stream import StreamEngine

        with self._lock:
            engine = self._engines.get(model_ref)
            if engine is None:
                if self._pool is None:
                    from audiobox.tts.pool import ModelPool

                    self._pool = ModelPool(self.config.runtime)
                synth = self._pool.synthesizer(model_ref, kind)
                engine = StreamEngine(synth, self.stream_options())
                self._engines[model_ref] = engine
            return engine

    def stream_options(self):
        from audiobox.tts.stream import StreamOptions

        chunks = {
            "first_chunk_frames": self.config.first_chunk_frames,
            "chunk_frames": self.config.chunk_frames,
        }
        return StreamOptions(max_batch=self.config.max_batch, **{k: v for k, v in chunks.items() if v})

    def _reference(self, slug: str):
        from audiobox.audio import load_audio

        ref_wav = self.registry.get(slug).ref_wav
        return load_audio(ref_wav) if ref_wav and ref_wav.is_file() else None

    def select_best(self, planned: PlannedSpeech, handles: list) -> tuple[np.ndarray, dict]:
        """Wait for every variant, judge them like ``speak --select-best``; (best audio, report)."""
        from audiobox.takes import JudgeOptions, TakeJudge
        from audiobox.tts.synth import Take

        takes = []
        for index, handle in enumerate(handles, start=1):
            samples = handle.read_all()
            takes.append(
                Take(
                    index=index,
                    samples=samples,
                    sample_rate=handle.sample_rate,
                    seed=handle.job.seed,
                    synth_sec=handle.stats.elapsed_sec,
                )
            )
        with self._lock:
            if self._judge is None:
                self._judge = TakeJudge(
                    JudgeOptions(asr=self.config.judge_asr, cache_dir=self.config.dirs.stage("asr"))
                )
            judge = self._judge
        job = planned.jobs[0]
        board = judge.judge(takes, job.text, job.language, reference=planned.reference)
        best_index = board.best_index or min(board.takes, key=lambda t: t.rank).index  # none passed: the top
        report = {
            "selected_take": best_index,
            "seed": takes[best_index - 1].seed,
            "passed": board.best is not None,
        }
        return takes[best_index - 1].samples, report

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()


def voice_object(summary: dict) -> dict:
    return {
        "id": summary["slug"],
        "object": "voice",
        "name": summary["display_name"],
        "kind": "speaker" if summary["engine"] == "custom_voice" else "clone",
        "ready": summary["ready"],
        "language": summary["language"],
        "speaker": summary["speaker"],
        "tones": summary["tones"],
        "transcript": summary["transcript"],
        "created_at": summary["created_at"],
    }


def builtin_object(name: str) -> dict:
    return {"id": name, "object": "voice", "name": name, "kind": "builtin", "ready": True}
