"""voice-clone end to end through its CLI: tiny Qwen3-TTS Base + tiny faster-whisper + Piper speech."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from audiobox.cli.voice_clone import main

REPO = Path(__file__).resolve().parents[1]
FAST = ["--max-new-tokens", "8", "--backend", "upstream"]


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    from clone_audio import shared_clone_audio

    return shared_clone_audio(tmp_path_factory)


@pytest.fixture(scope="module")
def models(tiny_models, tmp_path_factory):
    """base, a second Base checkpoint under another name (a second model of the same voice), whisper."""
    other = tmp_path_factory.mktemp("models") / "base-b"
    shutil.copytree(tiny_models / "base", other)
    return {"base": str(tiny_models / "base"), "base_b": str(other), "whisper": str(tiny_models / "whisper")}


@pytest.fixture()
def dirs(tmp_path):
    return {"cache": str(tmp_path / "cache"), "out": str(tmp_path / "work")}


def run(capsys, *args):
    """main([...]) in-process; returns (exit code, parsed JSON or None, stderr)."""
    code = main(list(args))
    captured = capsys.readouterr()
    data = json.loads(captured.out) if captured.out.strip().startswith("{") else None
    return code, data, captured.err


def voice_json(dirs, slug) -> dict:
    return json.loads((Path(dirs["cache"]) / "voices" / slug / "voice.json").read_text())


def registry_entries(dirs) -> list[str]:
    root = Path(dirs["cache"]) / "voices"
    return sorted(p.name for p in root.iterdir() if p.name != ".registry.lock") if root.is_dir() else []


def test_prepare_ref_scores_candidates_and_registers_the_reference(audio, models, dirs, capsys):
    code, data, err = run(
        capsys,
        "prepare-ref",
        "--ref-audio",
        str(audio.session),
        "--asr-model",
        models["whisper"],
        "--force-bad-ref",
        "--voice-name",
        "sess",
        "--json",
        "--cache",
        dirs["cache"],
    )
    assert code == 0, err
    assert data["chosen_by"] == "auto" and len(data["candidates"]) >= 3
    assert (
        audio.sections["clean"][0] - 0.3
        <= data["segment"]["start"]
        < data["segment"]["end"]
        <= audio.sections["clean"][1] + 0.3
    )
    assert data["registered"] == {"voice": "sess", "updated": False, "removed_prompts": []}
    record = voice_json(dirs, "sess")
    ref = record["ref"]
    assert ref["segment"] == {"start": data["segment"]["start"], "end": data["segment"]["end"]}
    assert ref["transcript"] == data["transcript"] and ref["transcript_source"] == "whisper"
    assert ref["scores"]["score"] == pytest.approx(data["score"], abs=1e-3) and "quality" in ref["scores"]
    assert ref["forced"] and record["prompts"] == {}  # reference only: no prompt yet
    wav, rate = sf.read(Path(dirs["cache"]) / "voices" / "sess" / "ref.wav")
    assert rate == 24000 and len(wav) / rate == pytest.approx(data["segment"]["duration"], abs=0.01)
    # progress goes to stderr (not a terminal here: plain lines), the JSON alone to stdout
    assert re.search(r"\] transcribe: started \(\d candidates\)\n", err) and "] transcribe: done in" in err

    # the human-readable form shows the table and the winner
    code, _, err = run(
        capsys,
        "prepare-ref",
        "--ref-audio",
        str(audio.session),
        "--asr-model",
        models["whisper"],
        "--force-bad-ref",
        "--cache",
        dirs["cache"],
    )
    assert code == 0 and "reference candidates" in err and "reference: " in err and "score" in err


def test_quality_gate_stops_with_one_line_and_registers_nothing(audio, models, dirs, capsys):
    code, data, err = run(
        capsys,
        "synth",
        "--ref-audio",
        str(audio.clean),
        "--asr-model",
        models["whisper"],
        "--voice-name",
        "gated",
        "--model",
        models["base"],
        "--text",
        "Hi.",
        *FAST,
        "--cache",
        dirs["cache"],
        "--out",
        dirs["out"],
    )
    assert code == 2 and data is None
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "transcript confidence" in lines[0] and "--force-bad-ref" in lines[0]
    assert "gated" not in registry_entries(dirs) and not list(Path(dirs["cache"]).glob("voices/.staging*"))


def test_synth_builds_registers_and_speaks_then_reuses(audio, models, dirs, capsys):
    from clone_audio import CLEAN_TEXT

    code, data, err = run(
        capsys,
        "synth",
        "--ref-audio",
        str(audio.clean),
        "--ref-text",
        CLEAN_TEXT,
        "--ref-language",
        "en",
        "--voice-name",
        "anna",
        "--model",
        models["base"],
        "--text",
        "Hello from the clone.",
        "--seed",
        "3",
        "--json",
        *FAST,
        "--cache",
        dirs["cache"],
        "--out",
        dirs["out"],
    )
    assert code == 0, err
    assert data["prompt"] == {"model": models["base"], "mode": "icl", "cached": False}
    assert data["registered"]["voice"] == "anna" and data["registered"]["created"] is True
    take = Path(data["takes"]["files"][0])
    samples, rate = sf.read(take)
    assert rate == 24000 and samples.ndim == 1 and 0 < len(samples) <= 8 * 1920 and np.isfinite(samples).all()
    meta = json.loads(Path(data["takes"]["meta"]).read_text())
    assert meta["app"] == "voice-clone synth" and meta["seed"] == 3 and meta["voice"]["id"] == "anna"
    assert (
        meta["reference"]["transcript"] == CLEAN_TEXT and meta["reference"]["transcript_source"] == "provided"
    )
    record = voice_json(dirs, "anna")
    assert record["ref"]["language"] == "english" and record["ref"]["transcript"] == CLEAN_TEXT
    ((pid, prompt),) = record["prompts"].items()
    assert (
        prompt["model"] == models["base"] and prompt["mode"] == "icl" and prompt["transcript"] == CLEAN_TEXT
    )
    voice_dir = Path(dirs["cache"]) / "voices" / "anna"
    assert (voice_dir / prompt["file"]).is_file() and (voice_dir / "source.wav").is_file()

    # the same reference again: prompt from the cache, no new registry entry needed
    code, data, err = run(
        capsys,
        "synth",
        "--voice",
        "anna",
        "--model",
        models["base"],
        "--text",
        "Again.",
        "--json",
        *FAST,
        "--cache",
        dirs["cache"],
        "--out",
        dirs["out"],
    )
    assert code == 0, err
    assert data["prompt"]["cached"] is True and data["registered"]["prompt_reused"] is True
    assert data["reference"]["chosen_by"] == "registered" and len(voice_json(dirs, "anna")["prompts"]) == 1
    assert data["takes"]["seed"] == data["takes"]["takes"][0]["seed"]
    # without --json: the take's path and the seed that repeats it, like voice-synth speak
    code, _, err = run(
        capsys, "synth", "--voice", "anna", "--model", models["base"], "--text", "Once more.", "--seed", "5",
        *FAST, "--cache", dirs["cache"], "--out", dirs["out"],
    )  # fmt: skip
    take_line = next(line for line in err.splitlines() if line.startswith("take 1: "))
    assert code == 0 and Path(take_line.split()[2]).is_file()
    assert "seed: 5 (--seed 5 with the same settings repeats this run)" in err

    # a second model of the same voice, a tone, and an x-vector prompt: all kept side by side
    assert (
        run(
            capsys,
            "synth",
            "--voice",
            "anna",
            "--model",
            models["base_b"],
            "--json",
            *FAST,
            "--cache",
            dirs["cache"],
        )[0]
        == 0
    )
    assert (
        run(
            capsys,
            "synth",
            "--voice",
            "anna",
            "--model",
            models["base"],
            "--tone",
            "calm",
            "--json",
            *FAST,
            "--cache",
            dirs["cache"],
        )[0]
        == 0
    )
    code, data, err = run(
        capsys,
        "synth",
        "--voice",
        "anna",
        "--model",
        models["base"],
        "--tone",
        "flat",
        "--x-vector-only",
        "--text",
        "Embedding only.",
        "--json",
        *FAST,
        "--cache",
        dirs["cache"],
        "--out",
        dirs["out"],
    )
    assert code == 0, err
    assert data["prompt"]["mode"] == "xvec" and data["reference"]["transcript"] is None
    prompts = voice_json(dirs, "anna")["prompts"]
    assert {(p["model_tag"], p["tone"], p["mode"]) for p in prompts.values()} == {
        ("base", None, "icl"),
        ("base-b", None, "icl"),
        ("base", "calm", "icl"),
        ("base", "flat", "xvec"),
    }

    # voice-synth speaks the registered voice with the prompt of the requested model
    from audiobox.cli.voice_synth import main as synth_main

    assert (
        synth_main(
            [
                "speak",
                "--voice",
                "anna",
                "--model",
                models["base_b"],
                "--text",
                "From voice-synth.",
                "--max-new-tokens",
                "8",
                "--cache",
                dirs["cache"],
                "--out",
                dirs["out"],
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["voice"] == "anna"

    # --refresh rebuilds the prompt from the same registered reference (it never re-picks the segment)
    segment = voice_json(dirs, "anna")["ref"]["segment"]
    code, data, err = run(
        capsys,
        "synth",
        "--voice",
        "anna",
        "--model",
        models["base"],
        "--refresh",
        "--json",
        *FAST,
        "--cache",
        dirs["cache"],
    )
    assert code == 0, err
    assert data["prompt"]["cached"] is False and data["registered"]["prompt_id"] == "base_icl_v2"
    assert voice_json(dirs, "anna")["ref"]["segment"] == segment

    # new bounds on the voice re-cut its reference (from source.wav) and drop prompts of the old one
    code, data, err = run(
        capsys,
        "synth",
        "--voice",
        "anna",
        "--ref-start",
        "0.2",
        "--ref-end",
        "3.9",
        "--ref-text",
        "A calm voice reads the evening news to a quiet room.",
        "--model",
        models["base"],
        "--json",
        *FAST,
        "--cache",
        dirs["cache"],
    )
    assert code == 0, err
    assert data["reference"]["segment"]["start"] == 0.2 and data["reference"]["segment"]["end"] == 3.9
    assert len(data["registered"]["removed_prompts"]) == 5
    record = voice_json(dirs, "anna")
    assert list(record["prompts"]) and all(p["ref_segment"] == [0.2, 3.9] for p in record["prompts"].values())


def test_x_vector_only_synth_without_registration(audio, models, dirs, capsys):
    code, data, err = run(
        capsys,
        "synth",
        "--ref-audio",
        str(audio.session),
        "--x-vector-only",
        "--model",
        models["base"],
        "--text",
        "No transcript needed.",
        "--json",
        *FAST,
        "--cache",
        dirs["cache"],
        "--out",
        dirs["out"],
    )
    assert code == 0, err
    assert data["prompt"]["mode"] == "xvec" and data["registered"] is None
    assert data["reference"]["transcript"] is None and data["reference"]["asr_model"] is None
    assert Path(data["takes"]["files"][0]).is_file() and registry_entries(dirs) == []
    code, again, _ = run(
        capsys,
        "synth",
        "--ref-audio",
        str(audio.session),
        "--x-vector-only",
        "--model",
        models["base"],
        "--text",
        "Again.",
        "--json",
        *FAST,
        "--cache",
        dirs["cache"],
        "--out",
        dirs["out"],
    )
    assert code == 0 and again["prompt"]["cached"] is True  # prompt cached beside the reference
    assert again["reference"]["reused"]["candidates"] is True


def test_interactive_choice(audio, dirs, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("9\n1\n"))
    code, data, err = run(
        capsys,
        "prepare-ref",
        "--ref-audio",
        str(audio.session),
        "--x-vector-only",
        "-i",
        "--json",
        "--cache",
        dirs["cache"],
    )
    assert code == 0, err
    assert "not a candidate number" in err and data["chosen_index"] == 1
    assert data["chosen_by"] in ("user", "auto")  # 1 may also be the winner
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, _, err = run(
        capsys,
        "prepare-ref",
        "--ref-audio",
        str(audio.session),
        "--x-vector-only",
        "-i",
        "--cache",
        dirs["cache"],
    )
    assert code == 2 and "needs an answer on stdin" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ref-audio", "{not_audio}", "--x-vector-only"], "cannot decode"),
        (["--ref-audio", "{empty}", "--x-vector-only"], "audio file is empty"),
        (["--ref-audio", "{silent}", "--x-vector-only"], "is silent"),
        (["--ref-audio", "{short}", "--x-vector-only"], "needs at least 3 s"),
        (["--ref-audio", "{clean}", "--ref-text", "Hi."], "does not match"),
        (["--voice", "nobody"], "no voice named 'nobody'"),
        (["--ref-audio", "{clean}", "--x-vector-only", "--voice-name", "Bad Name"], "invalid voice name"),
        (["--ref-audio", "{clean}", "--x-vector-only", "--ref-start", "5", "--ref-end", "2"], "start < end"),
    ],
)
def test_bad_inputs_exit_2_with_one_line_and_register_nothing(audio, models, dirs, capsys, args, message):
    paths = {k: str(getattr(audio, k)) for k in ("not_audio", "empty", "silent", "short", "clean")}
    args = [a.format(**paths) for a in args]
    code, data, err = run(
        capsys,
        "synth",
        *args,
        "--voice-name" if "--voice-name" not in args else "--json",
        *(["target"] if "--voice-name" not in args else []),
        "--model",
        models["base"],
        "--text",
        "Hi.",
        *FAST,
        "--cache",
        dirs["cache"],
        "--out",
        dirs["out"],
    )
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err, err
    assert registry_entries(dirs) == []


def test_usage_errors(audio, dirs, capsys):
    code, _, err = run(
        capsys, "synth", "--ref-audio", str(audio.clean), "--x-vector-only", "--cache", dirs["cache"]
    )
    assert code == 2 and "nothing to do" in err
    with pytest.raises(SystemExit) as info:
        main(["synth", "--text", "x"])  # neither --ref-audio nor --voice
    assert info.value.code == 2
    assert "one of the arguments --ref-audio --voice is required" in capsys.readouterr().err


def test_self_test_passes_on_tiny_models(models, dirs, capsys):
    code, data, err = run(
        capsys,
        "self-test",
        "--model",
        models["base"],
        "--asr-model",
        models["whisper"],
        "--json",
        *FAST,
        "--cache",
        dirs["cache"],
        "--out",
        dirs["out"],
    )
    assert code == 0, err
    status = {c["check"]: c["status"] for c in data["checks"]}
    assert status["reference"] == status["prepare-ref"] == status["load model"] == "ok"
    assert status["clone icl"] == status["clone xvec"] == "ok"
    assert status["whisper"] == "warn"  # random whisper: transcript is gibberish
    run_dir = Path(data["run_dir"])
    assert json.loads((run_dir / "self-test.json").read_text()) == data
    for mode in ("icl", "xvec"):  # every take says its seed and where it went
        take = next(c for c in data["checks"] if c["check"] == f"clone {mode}")
        assert take["seed"] == 1234 and Path(take["output"]) == run_dir / f"clone_{mode}.wav"
        assert sf.info(take["output"]).duration > 0.2


def test_self_test_is_a_library_workflow(models, tmp_path):
    """audiobox.selftest runs without the CLI: a missing model is a failed check (self-test.json says
    so, the earlier checks kept), and bad generation settings stop it before any work."""
    from audiobox.errors import UserError
    from audiobox.paths import resolve_dirs
    from audiobox.selftest import SelfTestRequest, run_self_test
    from audiobox.tts.pool import ModelPool

    dirs = resolve_dirs(tmp_path / "cache", tmp_path / "work")
    seen = []
    request = SelfTestRequest(model=str(tmp_path / "no-such-model"), skip_whisper=True)
    result = run_self_test(request, dirs, ModelPool(), on_check=seen.append)
    assert [(c.name, c.status) for c in seen] == [
        ("reference", "ok"),
        ("prepare-ref", "ok"),
        ("whisper", "skip"),
        ("load model", "fail"),
    ]
    assert not result.ok and result.checks == seen
    assert json.loads((result.run_dir / "self-test.json").read_text())["ok"] is False
    with pytest.raises(UserError, match="temperature"):
        run_self_test(SelfTestRequest(model=models["base"], knobs={"temperature": -1}), dirs, ModelPool())
    assert len(list((tmp_path / "work" / "voice-clone-self-test").iterdir())) == 1  # none for the refused run


def test_app_entry_point_runs_as_a_subprocess(audio, dirs):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    app = REPO / "apps" / "voice-clone" / "voice-clone.py"
    helped = subprocess.run(
        [sys.executable, str(app), "--help"], capture_output=True, text=True, env=env, timeout=60
    )
    assert helped.returncode == 0 and "prepare-ref" in helped.stdout and "self-test" in helped.stdout
    bad = subprocess.run(
        [
            sys.executable,
            str(app),
            "prepare-ref",
            "--ref-audio",
            str(audio.not_audio),
            "--x-vector-only",
            "--cache",
            dirs["cache"],
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode == 2 and bad.stdout == "" and "Traceback" not in bad.stderr
    assert bad.stderr.splitlines()[-1].startswith("error: cannot decode") and bad.stderr.count("error:") == 1
