"""Designed voices: VoiceDesign speaks a reference from a description, Base turns it into a clone prompt."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from audiobox.audio import Audio, load_audio, write_audio
from audiobox.fsutil import atomic_write_json, sha256_json
from audiobox.languages import normalize_language
from audiobox.paths import Dirs
from audiobox.progress import ProgressFn, Reporter
from audiobox.styles import resolve_instruct
from audiobox.tts.settings import resolve_settings
from audiobox.tts.text import clean_text
from audiobox.voices import VoiceRegistry, clone_record, ref_record, reference_files


@dataclass
class DesignRequest:
    slug: str
    ref_text: str
    instruct: str | None = None
    instruct_style: str | None = None
    language: str = "auto"
    design_model: str | None = None
    clone_model: str | None = None
    profile: str | None = None
    knobs: dict = field(default_factory=dict)
    greedy: bool = False
    seed: int | None = None
    display_name: str | None = None
    description: str = ""
    replace: bool = False


def design_voice(request: DesignRequest, dirs: Dirs, pool, progress: ProgressFn | None = None) -> dict:
    """Design, clone, register. The designed reference is cached by its inputs, so reruns are cheap.

    `progress` sees the designed reference being spoken ("synthesize") and the prompt built."""
    from audiobox.tts.synth import VoiceSpec

    registry = VoiceRegistry(dirs.voices)
    slug = registry.ensure_available(request.slug, request.replace)
    instruct, instruct_source = resolve_instruct(request.instruct, request.instruct_style)
    ref_text = clean_text(request.ref_text)
    settings, _ = resolve_settings(request.profile, None, request.greedy, **request.knobs)
    designer = pool.synthesizer(request.design_model, "voice_design")
    language = normalize_language(request.language, designer.info.languages)
    key = sha256_json(
        {
            "instruct": instruct,
            "text": ref_text,
            "language": language,
            "model": designer.info.ref,
            "settings": settings.to_dict(),
            "seed": request.seed,
        }
    )[:16]
    cache_dir = dirs.stage("designs") / key
    ref_path = cache_dir / "reference.wav"
    if ref_path.is_file() and (cache_dir / "design.json").is_file():  # design.json is written last
        reference = load_audio(ref_path)
        seed = json.loads((cache_dir / "design.json").read_text(encoding="utf-8")).get("seed")
    else:
        take = designer.speak(
            ref_text, VoiceSpec.design(instruct), language, settings, seed=request.seed, progress=progress
        )[0]
        reference, seed = Audio(take.samples, take.sample_rate), take.seed
        write_audio(ref_path, reference.samples, reference.sample_rate)
        atomic_write_json(
            cache_dir / "design.json",
            {
                "instruct": instruct,
                "instruct_source": instruct_source,
                "ref_text": ref_text,
                "language": language,
                "model": designer.info.ref,
                "seed": take.seed,
            },
        )
    pool.release(designer.info.ref)
    cloner = pool.synthesizer(request.clone_model, "base")
    with Reporter(progress).step("prompt", "ICL"):
        prompt = cloner.build_clone_prompt(reference, ref_text)

    record = clone_record(
        engine="designed_clone",
        display_name=request.display_name,
        description=request.description,
        source={
            "type": "designed",
            "instruct": instruct,
            "instruct_source": instruct_source,
            "design_model": designer.info.ref,
            "ref_text": ref_text,
            "seed": seed,
        },
        ref=ref_record(reference.duration, reference.sample_rate, ref_text, language),
    )
    registry.create(
        slug,
        record,
        write_files=reference_files(reference),
        replace=request.replace,
        prompts=((prompt, None, None),),
    )
    (prompt_id,) = registry.get(slug).prompts
    return {
        "voice": slug,
        "reference": str(ref_path),
        "duration_sec": reference.duration,
        "seed": seed,
        "prompt_id": prompt_id,
        "design_model": designer.info.ref,
        "clone_model": cloner.info.ref,
    }
