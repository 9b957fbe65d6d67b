"""Fault injection, part 1: hostile voice bundles and broken registry folders.

Each case is a zip an attacker (or a damaged download) could hand to `voice-synth import-voice`;
every one must end in one clear error, leave the registry as it was, and write nothing outside it.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from audiobox.cli.voice_synth import main
from audiobox.errors import UserError
from audiobox.fsutil import write_new_file
from audiobox.tts.prompts import ClonePrompt
from audiobox.voices import VoiceRegistry, validate_slug, validate_tone

# the bytes of a pickled dict: what a ".safetensors" that is really a pickle starts like
PICKLE_BYTES = b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s."


def tiny_prompt(model_ref: str = "Qwen/Qwen3-TTS-12Hz-0.6B-Base") -> ClonePrompt:
    return ClonePrompt(
        speaker_embedding=np.ones(8, np.float32),
        ref_code=np.zeros((3, 2), np.int64),
        ref_text="hello there",
        x_vector_only=False,
        model={"ref": model_ref, "tag": "base", "model_type": "base", "fingerprint": {}},
    )


@pytest.fixture()
def bundle(tmp_path) -> dict[str, bytes]:
    """The entries of a genuine export of a clone voice `z` (voice.json, ref.wav, one prompt)."""
    registry = VoiceRegistry(tmp_path / "src")

    def files(staging: Path) -> None:
        (staging / "ref.wav").write_bytes(b"RIFF....WAVE")

    registry.create(
        "z",
        {"engine": "clone_prompt", "ref": {"wav": "ref.wav", "transcript": "hi"}},
        write_files=files,
        prompts=((tiny_prompt(), None, None),),
    )
    out = registry.export_zip("z", tmp_path / "z.zip")
    with zipfile.ZipFile(out) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def zip_of(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data)  # ZipInfo keeps the raw name as given
    return path


def edit_record(entries: dict[str, bytes], change) -> dict[str, bytes]:
    record = json.loads(entries["z/voice.json"])
    change(record)
    return {**entries, "z/voice.json": json.dumps(record).encode()}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_genuine_bundle_round_trips(tmp_path, bundle):
    registry = VoiceRegistry(tmp_path / "voices")
    voice = registry.import_zip(zip_of(tmp_path / "ok.zip", bundle), new_slug="innocent")
    assert voice.slug == "innocent" and voice.ready
    assert sorted(snapshot(voice.dir)) == [
        "prompts/base_icl_v1.json",
        "prompts/base_icl_v1.safetensors",
        "ref.wav",
        "voice.json",
    ]


def hostile_cases():
    def prompt_rename(record):
        record["prompts"]["../../etc/passwd"] = record["prompts"].pop("base_icl_v1")

    def newline_id(record):
        record["prompts"]["base_icl_v1\n"] = record["prompts"].pop("base_icl_v1")

    def newline_tone(record):
        record["tones"] = {"calm\n": {"instruct": "x"}}

    return [
        # raw names that normalise to something allowed but are written under their raw form
        ("raw-name escape", lambda e: {**e, ".//./z/ref.wav": b"x"}, "unsafe path"),
        ("double slash", lambda e: {**e, "z//ref.wav": b"x"}, "unsafe path"),
        ("dot part", lambda e: {**e, "z/./prompts/base_icl_v1.json": b"{}"}, "unsafe path"),
        ("absolute", lambda e: {**e, "/tmp/z/ref.wav": b"x"}, "unsafe path"),
        ("parent", lambda e: {**e, "z/../../x/ref.wav": b"x"}, "unsafe path"),
        ("backslash", lambda e: {**e, "z\\..\\ref.wav": b"x"}, "unsafe path"),
        # prompt files that are not prompts, or that voice.json does not list
        (
            "disguised pickle",
            lambda e: {**e, "z/prompts/base_icl_v1.safetensors": PICKLE_BYTES},
            "not a safetensors prompt",
        ),
        (
            "unlisted pickle",
            lambda e: {**e, "z/prompts/extra_v1.safetensors": PICKLE_BYTES},
            "not listed in voice.json",
        ),
        (
            "unlisted json",
            lambda e: {**e, "z/prompts/extra_v1.json": b"{}"},
            "not listed in voice.json",
        ),
        (
            "listed but missing",
            lambda e: {k: v for k, v in e.items() if not k.endswith(".json") or "prompts" not in k},
            "does not contain",
        ),
        ("prompt id traversal", lambda e: edit_record(e, prompt_rename), "bad prompt id"),
        ("prompt id newline", lambda e: edit_record(e, newline_id), "bad prompt id"),
        ("tone newline", lambda e: edit_record(e, newline_tone), "bad tone name"),
        ("slug mismatch", lambda e: edit_record(e, lambda r: r.update(slug="../x")), "contradicts itself"),
        (
            "slug newline folder",
            lambda e: {k.replace("z/", "z\n/", 1): v for k, v in e.items()},
            "invalid voice name",
        ),
        ("duplicate entry", lambda e: {**e, "z/ref.wav\0": b""}, "twice"),
    ]


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("label,mutate,message", hostile_cases(), ids=[c[0] for c in hostile_cases()])
def test_hostile_bundle_is_refused_and_changes_nothing(tmp_path, bundle, label, mutate, message):
    registry = VoiceRegistry(tmp_path / "voices")
    registry.create("keep", {"engine": "custom_voice", "custom_voice": {"speaker": "ryan", "model": "m"}})
    before = snapshot(tmp_path)
    bad = zip_of(tmp_path / "bad.zip", mutate(bundle))
    before["bad.zip"] = bad.read_bytes()
    with pytest.raises(UserError, match=message):
        registry.import_zip(bad)
    with pytest.raises(UserError, match=message):
        registry.import_zip(bad, new_slug="innocent")
    after = {k: v for k, v in snapshot(tmp_path).items() if not k.endswith(".registry.lock")}
    assert after == {k: v for k, v in before.items() if not k.endswith(".registry.lock")}
    assert [v.slug for v in registry.list()[0]] == ["keep"]


def test_cli_import_of_a_hostile_bundle_prints_one_line(tmp_path, bundle, capsys):
    bad = zip_of(tmp_path / "evil.zip", {**bundle, "z/prompts/base_icl_v1.safetensors": PICKLE_BYTES})
    code = main(["import-voice", str(bad), "--as", "innocent", "--cache", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error:") and "safetensors" in err
    assert not (tmp_path / "cache" / "voices" / "innocent").exists()


def test_writes_never_follow_a_planted_symlink(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "ref.wav").symlink_to(outside)
    (staging / "prompts").symlink_to(tmp_path)
    with pytest.raises(OSError):
        write_new_file(staging, ("ref.wav",), b"evil")
    with pytest.raises(ValueError):
        write_new_file(staging, ("prompts", "x.json"), b"evil")
    with pytest.raises(ValueError):
        write_new_file(staging, ("..", "x.json"), b"evil")
    assert outside.read_text() == "precious" and not (tmp_path / "x.json").exists()


def test_prompt_with_wrong_dtype_or_extra_tensor_is_refused(tmp_path, bundle):
    from safetensors.numpy import save

    for tensors, message in [
        ({"speaker_embedding": np.ones(8, np.float64), "ref_code": np.zeros((3, 2), np.int64)}, "float64"),
        (
            {"speaker_embedding": np.ones((2, 8), np.float32), "ref_code": np.zeros((3, 2), np.int64)},
            "2 dims",
        ),
        (
            {
                "speaker_embedding": np.ones(8, np.float32),
                "ref_code": np.zeros((3, 2), np.int64),
                "x": np.ones(1, np.float32),
            },
            "unexpected tensor",
        ),
        ({"speaker_embedding": np.ones(8, np.float32)}, "missing tensors"),
    ]:
        bad = zip_of(tmp_path / "bad.zip", {**bundle, "z/prompts/base_icl_v1.safetensors": save(tensors)})
        with pytest.raises(UserError, match=message):
            VoiceRegistry(tmp_path / "voices").import_zip(bad)


def test_names_with_a_trailing_newline_are_refused(tmp_path):
    for bad in ("narrator\n", "narrator\r\n"):
        with pytest.raises(UserError, match="invalid voice name"):
            validate_slug(bad)
    with pytest.raises(UserError, match="invalid tone"):
        validate_tone("calm\n")
    registry = VoiceRegistry(tmp_path / "voices")
    registry.create("narrator", {"engine": "custom_voice", "custom_voice": {"speaker": "ryan", "model": "m"}})
    (tmp_path / "voices" / "narrator\n").mkdir()
    voices, problems = registry.list()
    assert (
        [v.slug for v in voices] == ["narrator"]
        and len(problems) == 1
        and "not a valid voice name" in problems[0]
    )


def test_export_holds_file_names_and_model_ids_only(tmp_path):
    registry = VoiceRegistry(tmp_path / "voices")
    host = str(tmp_path / "home" / "alice")

    def files(staging: Path) -> None:
        (staging / "ref.wav").write_bytes(b"RIFF")
        (staging / "notes.txt").write_text("private")  # not part of the record: not exported

    registry.create(
        "leaky",
        {
            "engine": "clone_prompt",
            "source": {
                "type": "file",
                "path": f"{host}/talk.wav",
                "clips_dir": f"{host}/clips",
                "url": "https://e.x/a",
            },
            "ref": {"wav": "ref.wav", "source_file": f"{host}/clips/c1.wav"},
        },
        write_files=files,
        prompts=((tiny_prompt(model_ref=f"{host}/models/Qwen3-TTS-12Hz-0.6B-Base"), None, None),),
    )
    out = registry.export_zip("leaky", tmp_path / "leaky.zip")
    with zipfile.ZipFile(out) as zf:
        names = sorted(zf.namelist())
        blobs = b"".join(zf.read(n) for n in names)
    assert names == [
        "leaky/prompts/base_icl_v1.json",
        "leaky/prompts/base_icl_v1.safetensors",
        "leaky/ref.wav",
        "leaky/voice.json",
    ]
    assert str(tmp_path).encode() not in blobs and b"alice" not in blobs
    record = json.loads(zipfile.ZipFile(out).read("leaky/voice.json"))
    assert record["source"]["path"] == "talk.wav" and record["source"]["url"] == "https://e.x/a"
    assert VoiceRegistry(tmp_path / "other").import_zip(out).ready  # the stripped bundle still imports


def test_empty_or_broken_voice_folder_is_a_problem_not_a_crash(tmp_path, capsys):
    registry = VoiceRegistry(tmp_path / "cache" / "voices")
    registry.create("good", {"engine": "custom_voice", "custom_voice": {"speaker": "ryan", "model": "m"}})
    (registry.root / "empty").mkdir()
    (registry.root / "broken").mkdir()
    (registry.root / "broken" / "voice.json").write_text("{oops")
    voices, problems = registry.list()
    assert [v.slug for v in voices] == ["good"] and len(problems) == 2
    with pytest.raises(UserError, match="no voice named 'nobody'.*known: broken, good"):
        registry.get("nobody")
    with pytest.raises(UserError, match="no voice named 'empty'"):
        registry.get("empty")
    assert main(["list-voices", "--cache", str(tmp_path / "cache")]) == 0
