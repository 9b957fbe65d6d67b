"""Generation settings: named profiles, explicit knobs, and a token budget sized from the text.

Runaway generation (a take that never emits its end token) is the most reported Qwen3-TTS defect,
so every call gets a budget derived from how long the text should take to say, with a hard cap.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from audiobox.errors import UserError
from audiobox.languages import expected_seconds

FRAMES_PER_SECOND = 12.5  # one codec frame = 80 ms of audio
BUDGET_MARGIN = 2.5  # generous: slow speakers and pauses must still fit
MIN_BUDGET_SECONDS = 3.0
HARD_MAX_NEW_TOKENS = 4096  # ~327 s of audio in one call

PROFILES: dict[str, dict] = {
    "stable": {
        "temperature": 0.45,
        "top_p": 0.78,
        "top_k": 50,
        "repetition_penalty": 1.12,
        "budget_scale": 0.9,
    },
    "balanced": {
        "temperature": 0.70,
        "top_p": 0.90,
        "top_k": 50,
        "repetition_penalty": 1.05,
        "budget_scale": 1.0,
    },
    "expressive": {
        "temperature": 0.92,
        "top_p": 0.96,
        "top_k": 50,
        "repetition_penalty": 1.00,
        "budget_scale": 1.2,
    },
}
DEFAULT_PROFILE = "balanced"
KNOBS = ("temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens")


@dataclass(frozen=True)
class GenerationSettings:
    profile: str = DEFAULT_PROFILE
    temperature: float = 0.70
    top_p: float = 0.90
    top_k: int = 50
    repetition_penalty: float = 1.05
    max_new_tokens: int | None = None  # None: derived from each text
    greedy: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    def budget_for(self, text: str, language: str | None = None) -> int:
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        return token_budget(
            text, language, PROFILES.get(self.profile, PROFILES[DEFAULT_PROFILE])["budget_scale"]
        )

    def generate_kwargs(self, text: str, language: str | None = None) -> dict:
        """The kwargs Qwen3TTSModel.generate_* take, for one text (chunk)."""
        kwargs = {
            "do_sample": not self.greedy,
            "subtalker_dosample": not self.greedy,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "subtalker_temperature": self.temperature,
            "subtalker_top_p": self.top_p,
            "subtalker_top_k": self.top_k,
            "repetition_penalty": self.repetition_penalty,
            "max_new_tokens": self.budget_for(text, language),
        }
        return kwargs


def token_budget(text: str, language: str | None = None, scale: float = 1.0) -> int:
    seconds = max(MIN_BUDGET_SECONDS, expected_seconds(text, language))
    return min(HARD_MAX_NEW_TOKENS, int(math.ceil(seconds * FRAMES_PER_SECOND * BUDGET_MARGIN * scale)) + 1)


def _check_range(name: str, value, low, high, low_open=False) -> None:
    if value is None:
        return
    if (value <= low if low_open else value < low) or value > high:
        raise UserError(
            f"--{name.replace('_', '-')} must be in {'(' if low_open else '['}{low}, {high}], got {value}"
        )


def resolve_settings(
    profile: str | None = None, voice_defaults: dict | None = None, greedy: bool = False, **explicit
) -> tuple[GenerationSettings, dict]:
    """Profile preset < the voice's saved defaults < explicit flags. Returns settings and their provenance."""
    voice_defaults = dict(voice_defaults or {})
    name = profile or voice_defaults.get("profile") or DEFAULT_PROFILE
    if name not in PROFILES:
        raise UserError(f"unknown profile {name!r} (choose from {', '.join(PROFILES)})")
    source = {
        "profile": "explicit" if profile else "voice_default" if voice_defaults.get("profile") else "default"
    }
    preset = {k: v for k, v in PROFILES[name].items() if k != "budget_scale"}
    settings = replace(GenerationSettings(), profile=name, greedy=greedy, **preset)
    for layer_name, layer in (("voice_default", voice_defaults), ("explicit", explicit)):
        for knob in KNOBS:
            if layer.get(knob) is not None:
                settings = replace(settings, **{knob: layer[knob]})
                source[knob] = layer_name
    _check_range("temperature", settings.temperature, 0.0, 5.0, low_open=True)
    _check_range("top_p", settings.top_p, 0.0, 1.0, low_open=True)
    _check_range("top_k", settings.top_k, 1, 10000)
    _check_range("repetition_penalty", settings.repetition_penalty, 0.0, 5.0, low_open=True)
    _check_range("max_new_tokens", settings.max_new_tokens, 2, HARD_MAX_NEW_TOKENS)
    return settings, source
