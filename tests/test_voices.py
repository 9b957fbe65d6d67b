"""The voice registry: validation, atomic locked writes, safe import/export, prompt compatibility."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from audiobox.errors import UserError
from audiobox.voices import VoiceRegistry, validate_slug

LIB = str(Path(__file__).resolve().parents[1] / "lib")


def custom_voice(registry: VoiceRegistry, slug: str) -> None:
    registry.create(slug, {"engine": "custom_voice", "custom_voice": {"speaker": "ryan", "model": "m"}})


@pytest.mark.parametrize("slug", ["../x", "a/b", "", "-a", "a-", "A", "a" * 65, "a b", ".hidden", "x\x00"])
def test_bad_slugs_are_rejected(slug):
    with pytest.raises(UserError, match="invalid voice name"):
        validate_slug(slug)


def test_create_refuses_overwrite_and_replace_is_atomic(tmp_path):
    registry = VoiceRegistry(tmp_path / "voices")
    custom_voice(registry, "one")
    with pytest.raises(UserError, match="already exists"):
        custom_voice(registry, "one")

    def failing_files(staging):
        (staging / "ref.wav").write_bytes(b"partial")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        registry.create("one", {"engine": "clone_prompt"}, write_files=failing_files, replace=True)
    assert registry.get("one").engine == "custom_voice"  # the old voice is intact
    with pytest.raises(RuntimeError):
        registry.create("two", {"engine": "clone_prompt"}, write_files=failing_files)
    assert not registry.exists("two")
    assert [p.name for p in (tmp_path / "voices").iterdir() if not p.name.startswith(".registry")] == ["one"]


def make_zip(path: Path, entries: dict[str, bytes], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def good_record(slug="z"):
    return json.dumps(
        {
            "schema_version": 1,
            "slug": slug,
            "engine": "custom_voice",
            "custom_voice": {"speaker": "ryan", "model": "m"},
            "prompts": {},
            "tones": {},
        }
    ).encode()


@pytest.mark.parametrize(
    "entries,symlink,message",
    [
        ({"../evil/voice.json": b"{}"}, None, "unsafe path"),
        ({"/abs/voice.json": b"{}"}, None, "unsafe path"),
        ({"z/voice.json": good_record(), "z/run.sh": b"#!/bin/sh"}, None, "unexpected file"),
        ({"z/voice.json": good_record(), "z/prompts/p.pkl": b"x"}, None, "unexpected file"),
        ({"z/voice.json": good_record()}, "z/ref.wav", "symbolic link"),
        ({"z/voice.json": good_record(), "y/voice.json": good_record("y")}, None, "exactly one voice folder"),
        ({"Bad Name/voice.json": good_record()}, None, "invalid voice name"),
        ({"z/voice.json": b"{oops"}, None, "not valid JSON"),
        (
            {
                "z/voice.json": json.dumps(
                    {
                        "schema_version": 1,
                        "engine": "clone_prompt",
                        "prompts": {"p": {"file": "prompts/p.safetensors"}},
                    }
                ).encode()
            },
            None,
            "does not contain it",
        ),
    ],
)
def test_import_rejects_unsafe_zips_and_changes_nothing(tmp_path, entries, symlink, message):
    registry = VoiceRegistry(tmp_path / "voices")
    custom_voice(registry, "keep")
    bad = make_zip(tmp_path / "bad.zip", entries, symlink)
    with pytest.raises(UserError, match=message):
        registry.import_zip(bad)
    voices, problems = registry.list()
    assert [v.slug for v in voices] == ["keep"] and not problems
    assert not (tmp_path / "evil").exists()


def test_import_rejects_zip_bombs(tmp_path, monkeypatch):
    import audiobox.voices as voices_mod

    monkeypatch.setattr(voices_mod, "ZIP_MAX_TOTAL_BYTES", 1000)
    bad = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bad, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("z/voice.json", good_record())
        zf.writestr("z/ref.wav", b"\0" * 100_000)
    with pytest.raises(UserError, match="would unpack to"):
        VoiceRegistry(tmp_path / "voices").import_zip(bad)


def test_not_a_zip(tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a valid zip"):
        VoiceRegistry(tmp_path / "voices").import_zip(junk)


WRITER = """
import sys
sys.path.insert(0, {lib!r})
from audiobox.voices import VoiceRegistry
registry = VoiceRegistry(__import__('pathlib').Path({root!r}))
for i in range({n}):
    def mutate(record, _dir, i=i):
        record['tones']['t{tag}-%d' % i] = {{'instruct': 'x' * 2000}}
    registry.update('shared', mutate)
"""


def test_concurrent_writers_leave_a_valid_registry(tmp_path):
    registry = VoiceRegistry(tmp_path / "voices")
    custom_voice(registry, "shared")
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER.format(lib=LIB, root=str(registry.root), n=15, tag=k)])
        for k in range(3)
    ]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    tones = registry.get("shared").data["tones"]
    assert len(tones) == 45  # no lost update: every writer's read-modify-write happened under the lock


def test_killed_writer_never_leaves_a_half_written_voice(tmp_path):
    registry = VoiceRegistry(tmp_path / "voices")
    custom_voice(registry, "shared")
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(lib=LIB, root=str(registry.root), n=100000, tag=0)]
    )
    time.sleep(2.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    voice = registry.get("shared")  # parses: the file was always replaced whole
    assert voice.engine == "custom_voice" and len(voice.data["tones"]) > 0
    registry.update("shared", lambda record, _dir: None)  # the lock is not left held by the dead process


def test_prompts_round_trip_as_safetensors_and_refuse_other_models(tiny_models, tmp_path):
    from audiobox.audio import Audio
    from audiobox.tts.models import read_model_info
    from audiobox.tts.runtime import load_tts
    from audiobox.tts.synth import Synthesizer

    synth = Synthesizer(load_tts(str(tiny_models / "base")))
    t = np.arange(24000 * 2) / 24000
    ref = Audio(
        (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32), 24000
    )
    prompt = synth.build_clone_prompt(ref, "A short reference sentence.")
    registry = VoiceRegistry(tmp_path / "voices")
    registry.create("cloned", {"engine": "clone_prompt"})
    pid = registry.add_prompt("cloned", prompt)
    assert pid == f"{synth.info.tag}_icl_v1"
    assert registry.add_prompt("cloned", prompt) == f"{synth.info.tag}_icl_v2"
    loaded, chosen = registry.load_prompt("cloned", synth.info)
    assert chosen.endswith("_v2")
    assert (
        np.array_equal(loaded.ref_code, prompt.ref_code) and loaded.ref_text == "A short reference sentence."
    )
    files = sorted(p.name for p in (tmp_path / "voices" / "cloned" / "prompts").iterdir())
    assert all(name.endswith((".safetensors", ".json")) for name in files)
    with pytest.raises(UserError, match="cannot be used with"):
        loaded.check_compatible(read_model_info(str(tiny_models / "custom_voice")))
    other = read_model_info(str(tiny_models / "base"))
    object.__setattr__(other, "fingerprint", {**other.fingerprint, "hidden_size": 1024})
    with pytest.raises(UserError, match="hidden_size"):
        loaded.check_compatible(other)
    with pytest.raises(UserError, match="no prompt built with"):
        registry.load_prompt("cloned", read_model_info("Qwen/Qwen3-TTS-12Hz-1.7B-Base"))
    (
        tmp_path / "voices" / "cloned" / "prompts" / f"{chosen}.safetensors"
    ).unlink()  # e.g. saved under a cut name
    with pytest.raises(
        UserError, match="build it again with `voice-clone synth --voice cloned --model .* --refresh`"
    ):
        registry.load_prompt("cloned", synth.info)


def xvec_prompt():
    """A minimal real ClonePrompt (x-vector only) for registry tests that need no model."""
    from audiobox.tts.prompts import ClonePrompt

    return ClonePrompt(
        speaker_embedding=np.ones(4, np.float32),
        ref_code=None,
        ref_text=None,
        x_vector_only=True,
        model={"ref": "m", "tag": "m", "model_type": "base", "fingerprint": {}},
    )


def test_voice_and_its_prompt_are_created_in_one_transaction(tmp_path):
    from audiobox.tts.prompts import ClonePrompt

    registry = VoiceRegistry(tmp_path / "voices")
    prompt = xvec_prompt()
    voice = registry.create("together", {"engine": "clone_prompt"}, prompts=((prompt, "calm", {"note": 1}),))
    ((pid, rec),) = voice.prompts.items()
    assert pid == "m_xvec_calm_v1" and rec["tone"] == "calm" and rec["note"] == 1 and voice.ready

    class Exploding(ClonePrompt):
        def save(self, stem):
            raise OSError("disk full")

    broken = Exploding(
        **{
            k: getattr(prompt, k)
            for k in ("speaker_embedding", "ref_code", "ref_text", "x_vector_only", "model")
        }
    )
    with pytest.raises(OSError):
        registry.create("half", {"engine": "clone_prompt"}, prompts=((broken, None, None),))
    assert not registry.exists("half")
    with pytest.raises(OSError):
        registry.create("together", {"engine": "clone_prompt"}, prompts=((broken, None, None),), replace=True)
    assert registry.get("together").prompts == voice.prompts  # the old voice survives a failed replace


def _tone(seconds: float, rate: int = 24000):
    from audiobox.audio import Audio

    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    return Audio((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)


def test_records_and_the_one_source_wav_rule(tmp_path):
    import soundfile as sf
    from audiobox.audio import write_audio
    from audiobox.voices import SOURCE_COPY_MAX_S, clone_record, ref_record, reference_files

    registry = VoiceRegistry(tmp_path / "voices")
    ref, short, long_file = _tone(4.0), _tone(20.0), tmp_path / "long.wav"
    write_audio(long_file, _tone(SOURCE_COPY_MAX_S + 1).samples, 24000)

    def record(**extra):
        return clone_record(ref=ref_record(ref.duration, ref.sample_rate, "Hi.", "auto", **extra), source={})

    cases = {"short": short, "long": long_file, "designed": None}
    for slug, recording in cases.items():
        registry.create(slug, record(origin=slug), write_files=reference_files(ref, recording))
    durations = {slug: sf.info(registry.get(slug).source_wav).duration for slug in cases}
    # the recording itself when short enough to keep, else the reference (never a missing file)
    assert durations == {"short": 20.0, "long": 4.0, "designed": 4.0}
    voice = registry.get("short")
    assert voice.display_name == "short" and voice.data["display_name"] == "short"
    assert voice.ref == {
        "wav": "ref.wav",
        "duration_sec": 4.0,
        "sample_rate": 24000,
        "transcript": "Hi.",
        "language": None,
        "origin": "short",
    }


def test_one_availability_check(tmp_path):
    registry = VoiceRegistry(tmp_path / "voices")
    custom_voice(registry, "taken")
    (tmp_path / "voices" / "half-made").mkdir()  # a folder without voice.json still blocks the name
    for slug in ("taken", "half-made"):
        with pytest.raises(UserError, match=f"voice '{slug}' already exists \\(use --force to replace it"):
            registry.ensure_available(slug)
    assert registry.ensure_available("taken", replace=True) == "taken"
    with pytest.raises(UserError, match="already exists \\(use --force to replace it, or --as NEW_NAME"):
        registry.import_zip(registry.export_zip("taken", tmp_path / "t.zip"))
    custom_voice(registry, "other")
    with pytest.raises(UserError, match="voice 'taken' already exists \\(use --force to replace it"):
        registry.rename("other", "taken")
    assert registry.rename("Other", "taken", replace=True).data["display_name"] == "taken"
    assert not registry.exists("other") and [v.slug for v in registry.list()[0]] == ["taken"]
    with pytest.raises(UserError, match="already has that name"):
        registry.rename("taken", "taken", replace=True)
    with pytest.raises(UserError, match="invalid voice name"):
        registry.ensure_available("Bad Name")


@pytest.mark.parametrize("tag", ["m", "qwen3-tts-12hz-0.6b-base"])  # a hub model's tag holds a dot
def test_replace_reference_drops_the_prompts_of_the_old_one(tmp_path, tag):
    from audiobox.tts.prompts import ClonePrompt
    from audiobox.voices import clone_record, ref_record, reference_files

    registry = VoiceRegistry(tmp_path / "voices")
    prompt = xvec_prompt()
    prompt.model = dict(prompt.model, tag=tag)
    old, new = _tone(4.0), _tone(6.0)
    registry.create(
        "anna",
        clone_record(ref=ref_record(old.duration, 24000, None, None), source={"type": "file"}),
        write_files=reference_files(old, _tone(30.0)),
        prompts=((prompt, None, None), (prompt, "calm", None)),
    )
    voice_dir = registry.get("anna").dir
    pids = sorted(registry.get("anna").prompts)
    assert pids == [f"{tag}_xvec_calm_v1", f"{tag}_xvec_v1"]
    # each prompt keeps its own two files (a dot in the id is no suffix) and loads back
    files = sorted(p.name for p in (voice_dir / "prompts").iterdir())
    assert files == sorted(f"{pid}{suffix}" for pid in pids for suffix in (".json", ".safetensors"))
    assert all(ClonePrompt.load(voice_dir / "prompts" / pid).x_vector_only for pid in pids)
    removed = registry.replace_reference(
        "anna", new, ref_record(new.duration, 24000, "New.", "english"), {"a": 1}
    )
    voice = registry.get("anna")
    assert sorted(removed) == pids and voice.prompts == {} and not voice.ready
    assert not list((voice_dir / "prompts").glob("*")) and not list(voice_dir.glob(".ref-new*"))
    assert voice.ref["transcript"] == "New." and voice.ref["language"] == "english"
    assert voice.data["source"] == {"type": "file", "re_cut": {"a": 1}}
    import soundfile as sf

    assert sf.info(voice.ref_wav).duration == 6.0 and sf.info(voice.source_wav).duration == 30.0
