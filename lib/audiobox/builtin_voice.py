"""Named voices for a CustomVoice model's built-in speakers (voice-synth register-builtin).

A built-in voice needs no audio: voice.json names the speaker, the model, a default instruction and
language, and named tones (an instruction each). Registering the same speaker again under the same
name adds the tone and updates the defaults in place; another speaker under that name needs `replace`.
Beside it: `audiobox.clone`, `audiobox.design`, `audiobox.register` for voices cloned from audio.
"""

from __future__ import annotations

from dataclasses import dataclass

from audiobox.errors import UserError
from audiobox.paths import Dirs
from audiobox.voices import Voice


@dataclass
class BuiltinRequest:
    voice_name: str
    speaker: str  # a speaker of the model (any case; see list-speakers)
    model: str | None = None  # CustomVoice model id or dir (default: DEFAULT_MODELS["custom_voice"])
    instruct_default: str | None = None  # used when speak gets no instruction; or, as a preset:
    instruct_default_style: str | None = None
    language_default: str = "auto"
    tone: str | None = None  # a named tone with its instruction (or preset)
    tone_instruct: str | None = None
    tone_instruct_style: str | None = None
    display_name: str | None = None
    description: str = ""
    replace: bool = False


@dataclass
class BuiltinResult:
    voice: Voice
    speaker: str  # as the model spells it
    updated: bool  # an existing voice of the same speaker got the tone / new defaults


def register_builtin(request: BuiltinRequest, dirs: Dirs) -> BuiltinResult:
    """Check everything against the model's config.json (no weights), then create or update the voice."""
    from audiobox.languages import normalize_language
    from audiobox.styles import resolve_instruct
    from audiobox.tts.models import DEFAULT_MODELS, read_model_info, require_type
    from audiobox.voices import VoiceRegistry, already_exists, builtin_record, validate_slug, validate_tone

    slug = validate_slug(request.voice_name)
    model = request.model or DEFAULT_MODELS["custom_voice"]
    info = read_model_info(model)
    require_type(info, "custom_voice", "register-builtin")
    speaker = info.canonical_speaker(request.speaker)
    language = normalize_language(request.language_default, info.languages)
    default_instruct, _ = resolve_instruct(request.instruct_default, request.instruct_default_style)
    tone_instruct, _ = resolve_instruct(request.tone_instruct, request.tone_instruct_style)
    validate_tone(request.tone)
    if bool(request.tone) != bool(tone_instruct):
        raise UserError("--tone needs --tone-instruct or --tone-instruct-style (and vice versa)")
    registry = VoiceRegistry(dirs.voices)
    custom_voice = {
        "speaker": speaker,
        "model": model,
        "instruct_default": default_instruct,
        "language_default": language,
    }
    tones = {request.tone: {"instruct": tone_instruct}} if request.tone else {}
    if registry.exists(slug) and not request.replace and registry.get(slug).engine == "custom_voice":

        def mutate(record, _dir):  # same speaker voice: add the tone / update defaults in place
            if record["custom_voice"]["speaker"] != speaker:
                raise already_exists(slug, f" with speaker {record['custom_voice']['speaker']!r}")
            record["custom_voice"].update({k: v for k, v in custom_voice.items() if v is not None})
            record["tones"].update(tones)

        return BuiltinResult(registry.update(slug, mutate), speaker, True)
    record = builtin_record(
        display_name=request.display_name,
        description=request.description,
        custom_voice=custom_voice,
        tones=tones,
        source={"type": "builtin", "speaker": speaker, "model": model},
    )
    return BuiltinResult(registry.create(slug, record, replace=request.replace), speaker, False)
