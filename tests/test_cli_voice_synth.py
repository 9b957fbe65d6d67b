"""voice-synth end to end: the real CLI and the real qwen_tts code on tiny random checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from audiobox.cli.voice_synth import main

MAX_TOKENS = ["--max-new-tokens", "8"]


@pytest.fixture()
def dirs(tmp_path):
    return {"cache": tmp_path / "cache", "out": tmp_path / "work"}


def run(args, dirs, capsys=None):
    code = main([*args, "--cache", str(dirs["cache"])])
    return code


def speak(dirs, *args):
    return main(
        ["speak", *args, *MAX_TOKENS, "--cache", str(dirs["cache"]), "--out", str(dirs["out"]), "--json"]
    )


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_speak_builtin_speaker_writes_takes_and_metadata(tiny_models, dirs, capsys):
    assert (
        speak(
            dirs,
            "--speaker",
            "Ryan",
            "--text",
            "Hello there.",
            "--model",
            str(tiny_models / "custom_voice"),
            "--variants",
            "2",
            "--seed",
            "7",
        )
        == 0
    )
    result = last_json(capsys)
    run_dir = Path(result["run_dir"])
    assert run_dir.parent.name == "speaker-ryan"
    meta = json.loads((run_dir / "takes.meta.json").read_text())
    assert meta["schema_version"] == 1 and meta["seed"] == 7 and meta["variants"] == 2
    assert meta["model"]["type"] == "custom_voice" and meta["model"]["device"] == "cpu"
    assert meta["voice"]["speaker"] == "Ryan" and meta["generation"]["max_new_tokens"] == 8
    assert {"model_load_sec", "synth_sec", "total_sec", "rtf"} <= set(meta["timings"])
    takes = [run_dir / t["file"] for t in meta["takes"]]
    assert [t.name for t in takes] == ["take_01.wav", "take_02.wav"]
    waves = []
    for take, record in zip(takes, meta["takes"]):
        data, rate = sf.read(take)
        assert rate == 24000 and data.ndim == 1 and 0 < len(data) <= 7 * 1920
        assert record["duration_sec"] == pytest.approx(len(data) / rate, abs=1e-3) and record["rtf"] > 0
        waves.append(data)
    assert (run_dir / "text.txt").read_text().strip() == "Hello there."


def test_same_seed_reproduces_takes_and_runs_never_collide(tiny_models, dirs, capsys):
    args = [
        "--speaker",
        "vivian",
        "--text",
        "Same seed.",
        "--model",
        str(tiny_models / "custom_voice"),
        "--seed",
        "11",
    ]
    assert speak(dirs, *args) == 0
    first = last_json(capsys)
    assert speak(dirs, *args) == 0
    second = last_json(capsys)
    assert first["run_dir"] != second["run_dir"]
    a, _ = sf.read(first["files"][0])
    b, _ = sf.read(second["files"][0])
    assert np.array_equal(a, b)


@pytest.mark.parametrize("fmt", ["flac", "mp3", "ogg"])
def test_output_formats_decode(tiny_models, dirs, capsys, fmt):
    assert (
        speak(
            dirs,
            "--speaker",
            "ryan",
            "--text",
            "Formats.",
            "--model",
            str(tiny_models / "custom_voice"),
            "--format",
            fmt,
            "--seed",
            "1",
        )
        == 0
    )
    path = Path(last_json(capsys)["files"][0])
    assert path.suffix == f".{fmt}"
    data, rate = sf.read(path)
    assert rate == 24000 and len(data) > 0


def test_chunked_text_gets_own_seed_and_budget_per_chunk(tiny_models, dirs, capsys):
    text = " ".join(f"This is sentence number {i} of a longer text that needs chunking." for i in range(8))
    assert (
        speak(
            dirs,
            "--speaker",
            "ryan",
            "--text",
            text,
            "--model",
            str(tiny_models / "custom_voice"),
            "--chunk",
            "--seed",
            "100",
            "--pause",
            "0.2",
        )
        == 0
    )
    meta = json.loads(Path(last_json(capsys)["run_dir"], "takes.meta.json").read_text())
    chunks = meta["takes"][0]["chunks"]
    assert len(chunks) >= 2
    assert [c["seed"] for c in chunks] == [100 + i for i in range(len(chunks))]
    assert " ".join(c["text"] for c in chunks) == meta["text"]
    total = sum(c["duration_sec"] for c in chunks) + 0.2 * (len(chunks) - 1)
    assert meta["takes"][0]["duration_sec"] == pytest.approx(total, abs=0.01)


def test_text_file_and_out_exact_and_json_result(tiny_models, dirs, tmp_path, capsys):
    text_file = tmp_path / "t.txt"
    text_file.write_text("From a file.\n", encoding="utf-8")
    exact = tmp_path / "exact"
    result_file = tmp_path / "r.json"
    assert (
        main(
            [
                "speak",
                "--speaker",
                "ryan",
                "--text-file",
                str(text_file),
                "--model",
                str(tiny_models / "custom_voice"),
                "--out-exact",
                str(exact),
                "--json-result",
                str(result_file),
                *MAX_TOKENS,
                "--cache",
                str(dirs["cache"]),
            ]
        )
        == 0
    )
    assert (exact / "take_01.wav").is_file() and (exact / "takes.meta.json").is_file()
    assert json.loads(result_file.read_text())["run_dir"] == str(exact)


def test_register_builtin_with_tone_then_speak(tiny_models, dirs, capsys):
    model = str(tiny_models / "custom_voice")
    assert (
        run(
            [
                "register-builtin",
                "--voice-name",
                "narrator",
                "--speaker",
                "Aiden",
                "--model",
                model,
                "--instruct-default-style",
                "calm",
            ],
            dirs,
        )
        == 0
    )
    assert (
        run(
            [
                "register-builtin",
                "--voice-name",
                "narrator",
                "--speaker",
                "aiden",
                "--model",
                model,
                "--tone",
                "excited",
                "--tone-instruct",
                "Very excited!",
            ],
            dirs,
        )
        == 0
    )
    capsys.readouterr()
    assert speak(dirs, "--voice", "narrator", "--tone", "excited", "--text", "Tone test.") == 0
    meta = json.loads(Path(last_json(capsys)["meta"]).read_text())
    assert meta["voice"]["engine"] == "custom_voice" and meta["voice"]["speaker"] == "aiden"
    assert meta["voice"]["instruct"] == "Very excited!" and meta["voice"]["instruct_source"] == "tone"
    assert meta["model"]["ref"] == model
    assert speak(dirs, "--voice", "narrator", "--text", "Default instruct.") == 0
    meta = json.loads(Path(last_json(capsys)["meta"]).read_text())
    assert meta["voice"]["instruct_source"] == "voice_default"


def test_design_voice_registers_a_clone_voice_that_speaks(tiny_models, dirs, capsys):
    assert (
        run(
            [
                "design-voice",
                "--voice-name",
                "storyteller",
                "--instruct",
                "A warm, elderly storyteller.",
                "--ref-text",
                "Once upon a time, there was a quiet village.",
                "--design-model",
                str(tiny_models / "voice_design"),
                "--clone-model",
                str(tiny_models / "base"),
                "--seed",
                "3",
                "--max-new-tokens",
                "20",
                "--json",
            ],
            dirs,
        )
        == 0
    )
    designed = last_json(capsys)
    voice_dir = dirs["cache"] / "voices" / "storyteller"
    record = json.loads((voice_dir / "voice.json").read_text())
    assert (
        record["engine"] == "designed_clone"
        and record["source"]["instruct"] == "A warm, elderly storyteller."
    )
    assert sf.info(str(voice_dir / "ref.wav")).samplerate == 24000
    ((prompt_id, prompt),) = record["prompts"].items()
    assert prompt_id == designed["prompt_id"] and prompt["model"] == str(tiny_models / "base")
    assert designed["seed"] == record["source"]["seed"] == 3  # the designed reference says how to re-make it
    assert (voice_dir / prompt["file"]).is_file() and not list(voice_dir.rglob("*.pkl"))
    assert (
        speak(dirs, "--voice", "storyteller", "--text", "The designed voice speaks.", "--variants", "2") == 0
    )
    meta = json.loads(Path(last_json(capsys)["meta"]).read_text())
    assert (
        meta["voice"]["prompt_id"] == prompt_id
        and meta["model"]["type"] == "base"
        and len(meta["takes"]) == 2
    )


def test_list_commands_json(tiny_models, dirs, capsys):
    assert (
        run(
            [
                "register-builtin",
                "--voice-name",
                "ryan-calm",
                "--speaker",
                "ryan",
                "--model",
                str(tiny_models / "custom_voice"),
            ],
            dirs,
        )
        == 0
    )
    capsys.readouterr()
    assert run(["list-voices", "--json"], dirs) == 0
    listing = last_json(capsys)
    assert (
        listing["count"] == 1
        and listing["voices"][0]["slug"] == "ryan-calm"
        and listing["voices"][0]["ready"]
    )
    assert run(["list-speakers", "--json", "--model", str(tiny_models / "custom_voice")], dirs) == 0
    speakers = last_json(capsys)
    assert speakers["count"] == 9 and {"name": "dylan", "dialect": "beijing_dialect"} in speakers["speakers"]
    assert run(["list-speakers", "--json"], dirs) == 0  # the published model, not cached: facts, no download
    assert last_json(capsys)["source"] == "published"
    assert run(["capabilities", "--json"], dirs) == 0
    caps = last_json(capsys)
    assert caps["packages"]["qwen-tts"] == "0.1.1" and caps["runtime"].startswith("not probed")
    assert run(["capabilities", "--json", "--probe"], dirs) == 0
    assert last_json(capsys)["runtime"]["device"] == "cpu"


def test_rename_delete_export_import_round_trip(tiny_models, dirs, tmp_path, capsys):
    model = str(tiny_models / "custom_voice")
    assert (
        run(["register-builtin", "--voice-name", "alpha", "--speaker", "serena", "--model", model], dirs) == 0
    )
    assert run(["rename-voice", "alpha", "beta"], dirs) == 0
    zip_path = tmp_path / "beta.zip"
    assert run(["export-voice", "beta", "--dest", str(zip_path)], dirs) == 0
    assert run(["export-voice", "beta", "--dest", str(zip_path)], dirs) == 2  # never overwrites silently
    assert run(["delete-voice", "beta", "--yes"], dirs) == 0
    assert not (dirs["cache"] / "voices" / "beta").exists()
    assert run(["import-voice", str(zip_path)], dirs) == 0
    assert run(["import-voice", str(zip_path)], dirs) == 2
    assert run(["import-voice", str(zip_path), "--as", "gamma"], dirs) == 0
    capsys.readouterr()
    assert run(["list-voices", "--json"], dirs) == 0
    assert sorted(v["slug"] for v in last_json(capsys)["voices"]) == ["beta", "gamma"]
    # a bundle names a local model folder by its name only (no host paths): say where it is here
    assert speak(dirs, "--voice", "gamma", "--text", "Imported.", "--model", model) == 0


BAD_SPEAK = [
    (["--voice", "nobody", "--text", "x"], "no voice named 'nobody'"),
    (["--voice", "../x", "--text", "x"], "invalid voice name"),
    (["--speaker", "nobody", "--text", "x"], "unknown speaker 'nobody'"),
    (["--speaker", "ryan", "--text", "x", "--language", "klingon"], "unknown language 'klingon'"),
    (["--speaker", "ryan", "--text", "   "], "the text is empty"),
    (["--speaker", "ryan", "--text-file", "/nonexistent/t.txt"], "text file not found"),
    (["--speaker", "ryan", "--text", "x", "--tone", "happy"], "--tone needs --voice"),
    (["--speaker", "ryan", "--text", "x", "--instruct-style", "nope"], "unknown instruct style 'nope'"),
    (["--speaker", "ryan", "--text", "x", "--temperature", "0"], "--temperature must be in"),
]


@pytest.mark.parametrize("args,message", BAD_SPEAK)
def test_bad_speak_input_is_one_clear_line(tiny_models, dirs, capsys, args, message):
    code = main(
        [
            "speak",
            *args,
            "--model",
            str(tiny_models / "custom_voice"),
            "--cache",
            str(dirs["cache"]),
            "--out",
            str(dirs["out"]),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert message in err[-1] and "Traceback" not in "\n".join(err)
    assert not dirs["out"].exists() or not any(dirs["out"].rglob("take_*"))


def test_unknown_tone_and_wrong_model_type(tiny_models, dirs, capsys):
    assert (
        run(
            [
                "register-builtin",
                "--voice-name",
                "v1",
                "--speaker",
                "ryan",
                "--model",
                str(tiny_models / "custom_voice"),
            ],
            dirs,
        )
        == 0
    )
    assert speak(dirs, "--voice", "v1", "--tone", "sad", "--text", "x") == 2
    assert "has no tone 'sad'" in capsys.readouterr().err
    assert speak(dirs, "--speaker", "ryan", "--text", "x", "--model", str(tiny_models / "base")) == 2
    assert "needs a built-in speakers (CustomVoice) model" in capsys.readouterr().err


def test_corrupted_voice_json_is_reported_not_skipped(tiny_models, dirs, capsys):
    assert (
        run(
            [
                "register-builtin",
                "--voice-name",
                "broken",
                "--speaker",
                "ryan",
                "--model",
                str(tiny_models / "custom_voice"),
            ],
            dirs,
        )
        == 0
    )
    (dirs["cache"] / "voices" / "broken" / "voice.json").write_text("{not json")
    assert speak(dirs, "--voice", "broken", "--text", "x") == 2
    assert "voice 'broken' is corrupted" in capsys.readouterr().err
    assert run(["list-voices", "--json"], dirs) == 0
    listing = last_json(capsys)
    assert listing["count"] == 0 and "corrupted" in listing["problems"][0]


def test_uncached_hub_model_fails_fast_with_a_way_out(dirs, capsys, monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(dirs["cache"] / "empty-hf"))
    started = time.monotonic()
    assert speak(dirs, "--speaker", "ryan", "--text", "x") == 2
    err = capsys.readouterr().err
    assert time.monotonic() - started < 10
    assert "is not in the cache (" in err and "HF_HUB_OFFLINE=1" in err
    assert "voice-models download Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice" in err and "<cache>" not in err


def test_prompt_from_another_model_is_a_clear_error(tiny_models, dirs, tmp_path, capsys):
    from make_tiny_models import build_tiny_qwen

    other_base = build_tiny_qwen(tmp_path / "other", kinds=("base",), codebook_size=512)["base"]
    other_base = other_base.rename(other_base.with_name("big-base"))
    assert (
        run(
            [
                "design-voice",
                "--voice-name",
                "d1",
                "--instruct",
                "A calm voice.",
                "--ref-text",
                "A reference.",
                "--design-model",
                str(tiny_models / "voice_design"),
                "--clone-model",
                str(tiny_models / "base"),
                "--max-new-tokens",
                "12",
                "--seed",
                "1",
            ],
            dirs,
        )
        == 0
    )
    capsys.readouterr()
    assert speak(dirs, "--voice", "d1", "--text", "x", "--model", str(other_base)) == 2
    assert "has no prompt built with" in capsys.readouterr().err
    # a record claiming the other model: the fingerprint stored with the prompt still catches it
    voice_json = dirs["cache"] / "voices" / "d1" / "voice.json"
    record = json.loads(voice_json.read_text())
    for rec in record["prompts"].values():
        rec["model"], rec["model_tag"] = str(other_base), "big-base"
    voice_json.write_text(json.dumps(record))
    assert speak(dirs, "--voice", "d1", "--text", "x") == 2
    err = capsys.readouterr().err
    assert "cannot be used with" in err and "vocab_size" in err and "--voice d1" in err


def test_bfloat16_on_cpu_runs_on_packed_weights(tiny_models, dirs, capsys):
    from audiobox.tts.weights import bf16_packing_is_exact

    assert (
        speak(
            dirs,
            "--speaker",
            "ryan",
            "--text",
            "Packed.",
            "--model",
            str(tiny_models / "custom_voice"),
            "--dtype",
            "bfloat16",
            "--seed",
            "2",
        )
        == 0
    )
    meta = json.loads(Path(last_json(capsys)["meta"]).read_text())
    assert meta["model"]["dtype"] == "bfloat16" and meta["model"]["backend"] == "fast"
    assert meta["model"]["weights"] == ("onednn-packed" if bf16_packing_is_exact() else "as loaded")


def test_int8_is_an_opt_in_cpu_precision(tiny_models, dirs, capsys):
    assert (
        speak(
            dirs,
            "--speaker",
            "ryan",
            "--text",
            "Quantized.",
            "--model",
            str(tiny_models / "custom_voice"),
            "--dtype",
            "int8",
            "--seed",
            "2",
        )
        == 0
    )
    meta = json.loads(Path(last_json(capsys)["meta"]).read_text())
    assert meta["model"]["dtype"] == "int8" and meta["model"]["backend"] == "fast"
    assert meta["model"]["weights"].startswith("dynamic-int8, ")  # codec: bf16 where the CPU has it
    # a cloned voice: the speaker encoder and codec stay in the load dtype beside the float32 talker
    assert (
        run(
            [
                "design-voice",
                "--voice-name",
                "narrator",
                "--instruct",
                "A calm narrator.",
                "--ref-text",
                "A short reference sentence.",
                "--design-model",
                str(tiny_models / "voice_design"),
                "--clone-model",
                str(tiny_models / "base"),
                "--seed",
                "3",
                "--max-new-tokens",
                "12",
            ],
            dirs,
        )
        == 0
    )
    capsys.readouterr()
    assert (
        speak(dirs, "--voice", "narrator", "--text", "Eight bit clone.", "--dtype", "int8", "--seed", "1")
        == 0
    )
    meta = json.loads(Path(last_json(capsys)["meta"]).read_text())
    assert meta["model"]["type"] == "base" and meta["model"]["dtype"] == "int8" and meta["takes"]
    assert (
        speak(
            dirs,
            "--speaker",
            "ryan",
            "--text",
            "x",
            "--model",
            str(tiny_models / "custom_voice"),
            "--dtype",
            "float16",
        )
        == 2
    )
    assert "--dtype float16 is for GPUs" in capsys.readouterr().err
