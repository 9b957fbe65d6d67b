"""Keep each model loaded once per process (batch scripts, voice-register, design-voice)."""

from __future__ import annotations

from audiobox.progress import ProgressFn, Reporter
from audiobox.tts.models import DEFAULT_MODELS
from audiobox.tts.runtime import RuntimeOptions, load_tts


class ModelPool:
    def __init__(
        self,
        options: RuntimeOptions = RuntimeOptions(),
        backend: str = "auto",
        progress: ProgressFn | None = None,
    ):
        self.options = options
        self.backend = backend
        self.progress = Reporter(progress)  # a "load" stage per model loaded
        self._synths: dict[str, object] = {}

    def synthesizer(self, model_ref: str | None, kind: str):
        from audiobox.tts.synth import Synthesizer

        ref = model_ref or DEFAULT_MODELS[kind]
        if ref not in self._synths:
            with self.progress.step("load", ref):
                loaded = load_tts(ref, self.options, kind, self.progress.sink)
                self._synths[ref] = Synthesizer(loaded, backend=self.backend)
        return self._synths[ref]

    def release(self, model_ref: str) -> None:
        """Free a model that this run no longer needs (e.g. VoiceDesign before loading Base)."""
        self._synths.pop(model_ref, None)
        import gc

        gc.collect()
