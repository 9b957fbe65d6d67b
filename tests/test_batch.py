"""Batch scripts (audiobox.batch / `voice-synth batch`) on the tiny real checkpoints.

Covered: validation of the whole script before any model loads (line numbers, unknown voice in
item 37, empty text), grouping into batched calls with each model loaded once, resume after a
run killed with SIGKILL, a failing item that does not stop the others (and --fail-fast that does),
and a [voice]-tagged dialogue rendered into one file. The audio itself is noise (random weights).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from audiobox.cli.voice_synth import main

ROOT = Path(__file__).resolve().parents[1]
TOKENS = ["--max-new-tokens", "6"]


@pytest.fixture(scope="module")
def voices_cache(tiny_models, tmp_path_factory) -> Path:
    """A registry with two clone voices (tiny Base prompts) and one built-in speaker voice."""
    from audiobox.audio import Audio, write_audio
    from audiobox.tts.pool import ModelPool
    from audiobox.tts.runtime import RuntimeOptions
    from audiobox.voices import VoiceRegistry

    cache = tmp_path_factory.mktemp("batch_cache")
    registry = VoiceRegistry(cache / "voices")
    synth = ModelPool(RuntimeOptions(device="cpu")).synthesizer(str(tiny_models / "base"), "base")
    for slug, f0 in (("alice", 220.0), ("bob", 130.0)):
        t = np.arange(2 * 24000) / 24000
        ref = Audio((0.2 * np.sin(2 * np.pi * f0 * t)).astype(np.float32), 24000)
        prompt = synth.build_clone_prompt(ref, "A short reference line.")
        registry.create(
            slug,
            {
                "engine": "clone_prompt",
                "ref": {
                    "wav": "ref.wav",
                    "duration_sec": 2.0,
                    "sample_rate": 24000,
                    "transcript": "A short reference line.",
                },
            },
            write_files=lambda d, ref=ref: write_audio(d / "ref.wav", ref.samples, 24000),
        )
        registry.add_prompt(slug, prompt)
    assert (
        main(
            [
                "register-builtin",
                "--voice-name",
                "narrator",
                "--speaker",
                "ryan",
                "--model",
                str(tiny_models / "custom_voice"),
                "--cache",
                str(cache),
            ]
        )
        == 0
    )
    return cache


@pytest.fixture()
def cache(voices_cache, tmp_path) -> Path:
    copy = tmp_path / "cache"
    shutil.copytree(voices_cache, copy)
    return copy


def batch(script: Path, cache: Path, out: Path, *args) -> int:
    return main(["batch", str(script), "--cache", str(cache), "--out-exact", str(out), *TOKENS, *args])


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


class CountingLoads:
    """Counts real model loads (load_tts still runs)."""

    def __init__(self, monkeypatch):
        import audiobox.tts.pool as pool

        self.refs: list[str] = []
        real = pool.load_tts

        def counted(ref, *args, **kwargs):
            self.refs.append(ref)
            return real(ref, *args, **kwargs)

        monkeypatch.setattr(pool, "load_tts", counted)


# --------------------------------------------------------------------------------------------
# validation before any model loads


def test_unknown_voice_in_item_37_is_reported_before_any_model_loads(cache, tmp_path, monkeypatch, capsys):
    loads = CountingLoads(monkeypatch)
    lines = ["items:"] + [f'  - {{voice: narrator, text: "Line {i}."}}' for i in range(1, 37)]
    lines += ['  - {voice: nobody, text: "Who am I?"}', '  - {voice: narrator, text: ""}']
    script = tmp_path / "long.yaml"
    script.write_text("\n".join(lines) + "\n")
    assert batch(script, cache, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "long.yaml:38 (item 37): no voice named 'nobody'" in err
    assert "long.yaml:39 (item 38): empty or missing 'text'" in err
    assert loads.refs == [] and not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.parametrize(
    "name,content,message",
    [
        (
            "bad.yaml",
            'items:\n  - {voice: narrator, text: "ok"}\n  - {voice: narrator text: "x"\n',
            "bad.yaml:3: not valid YAML",
        ),
        (
            "bad.jsonl",
            '{"voice": "narrator", "text": "ok"}\n\n{"voice": "narrator", "text": \n',
            "bad.jsonl:3: not valid JSON",
        ),
        ("bad.txt", "no tag here\n[narrator] hi\n", "bad.txt:1: dialogue text before any [voice] tag"),
        (
            "typo.jsonl",
            '{"voice": "narrator", "txt": "hello"}\n',
            "typo.jsonl:1 (item 1): unknown field(s) txt",
        ),
        ("both.yaml", '- {voice: narrator, speaker: ryan, text: "x"}\n', "exactly one of 'voice'"),
        (
            "variants.yaml",
            '- {voice: narrator, text: "x", variants: 40}\n',
            "'variants' must be a whole number",
        ),
        (
            "dup.yaml",
            '- {voice: narrator, text: "a", output: same}\n- {voice: narrator, text: "b", output: same}\n',
            "output 'same' would also be written by item 1",
        ),
        ("path.yaml", '- {voice: narrator, text: "a", output: ../escape}\n', "must be a plain file name"),
        ("empty.yaml", "", "the script has no items"),
        ("script.csv", "voice,text\n", "unknown script type .csv"),
    ],
)
def test_malformed_scripts_are_one_clear_error_with_the_line(cache, tmp_path, capsys, name, content, message):
    script = tmp_path / name
    script.write_text(content)
    assert batch(script, cache, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_check_validates_without_generating(cache, tmp_path, capsys, monkeypatch):
    loads = CountingLoads(monkeypatch)
    script = tmp_path / "ok.jsonl"
    script.write_text('{"voice": "alice", "text": "One."}\n{"voice": "narrator", "text": "Two."}\n')
    assert main(["batch", str(script), "--check", "--cache", str(cache)]) == 0
    assert "2 items OK" in capsys.readouterr().err and loads.refs == []


# --------------------------------------------------------------------------------------------
# generation on tiny models


def test_items_sharing_a_model_are_batched_and_each_model_loads_once(cache, tmp_path, monkeypatch, capsys):
    loads = CountingLoads(monkeypatch)
    script = tmp_path / "mixed.yaml"
    script.write_text(
        "defaults: {language: english}\n"
        "items:\n"
        '  - {voice: alice, text: "Hello there, this is Alice.", output: alice-hello}\n'
        '  - {voice: narrator, text: "The narrator speaks."}\n'
        '  - {voice: bob, text: "And this is Bob."}\n'
        '  - {voice: alice, text: "Alice again, two takes.", variants: 2}\n'
        '  - {voice: narrator, text: "The narrator, once more."}\n'
    )
    out = tmp_path / "out"
    assert batch(script, cache, out, "--seed", "3", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["done"] == 5 and summary["failed"] == 0 and summary["audio_sec"] > 0
    assert summary["outputs"][0]["files"] == [str(out / "alice-hello.wav")]
    assert (
        sorted(loads.refs) == sorted(set(loads.refs)) and len(loads.refs) == 2
    )  # Base + CustomVoice, once each
    items = {e["item"]: e for e in manifest(out)["items"]}
    assert {o["item"]: o["seed"] for o in summary["outputs"]} == {n: e["seed"] for n, e in items.items()}
    assert sorted(items[1]["batched_with"]) == [1, 3]  # alice + bob: one Base call
    assert sorted(items[2]["batched_with"]) == [2, 5]  # narrator x2: one CustomVoice call
    assert items[4]["batched_with"] == [4]  # variants are batched inside speak()
    assert items[1]["files"] == ["alice-hello.wav"] and items[3]["files"] == ["003-bob.wav"]
    assert items[4]["files"] == ["004-alice.take_01.wav", "004-alice.take_02.wav"]
    for entry in items.values():
        assert entry["status"] == "done" and entry["key"] and entry["rtf"] > 0
        for name in entry["files"]:
            data, rate = sf.read(out / name)
            assert rate == 24000 and len(data) > 0
    # idempotent: the same command again generates nothing and loads no model
    loads.refs.clear()
    assert batch(script, cache, out, "--seed", "3") == 0
    again = manifest(out)
    assert loads.refs == [] and again["summary"] == {"done": 5, "reused": 5} and again["runs"] == 2
    # a changed item is regenerated, the others are kept
    script.write_text(script.read_text().replace("And this is Bob.", "And this is Bob, changed."))
    assert batch(script, cache, out, "--seed", "3") == 0
    assert manifest(out)["summary"] == {"done": 5, "reused": 4}


def test_resume_after_a_killed_run(cache, tmp_path):
    script = tmp_path / "long.jsonl"
    script.write_text(
        "".join(
            json.dumps({"voice": "narrator", "text": f"Line number {i} of the script."}) + "\n"
            for i in range(1, 13)
        )
    )
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        str(ROOT / "apps/voice-synth/voice-synth.py"),
        "batch",
        str(script),
        "--cache",
        str(cache),
        "--out-exact",
        str(out),
        "--batch-size",
        "1",
        "--seed",
        "9",
        "--max-new-tokens",
        "8",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done_before = []
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                entries = manifest(out)["items"]
            except (OSError, ValueError):
                entries = []
            done_before = [e for e in entries if e["status"] == "done"]
            if done_before:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    assert 1 <= len(done_before) < 12, "the run was not killed mid-way"
    kept = {e["files"][0]: (out / e["files"][0]).stat().st_mtime_ns for e in done_before}
    assert (
        main(
            [
                "batch",
                str(script),
                "--cache",
                str(cache),
                "--out-exact",
                str(out),
                "--seed",
                "9",
                "--max-new-tokens",
                "8",
            ]
        )
        == 0
    )  # the rest in one batched call
    final = manifest(out)
    assert final["summary"]["done"] == 12 and final["summary"]["reused"] >= len(done_before)
    for name, mtime in kept.items():
        assert (out / name).stat().st_mtime_ns == mtime  # finished items were not redone
    assert len(list(out.glob("*.wav"))) == 12


def _break_prompt(cache: Path, slug: str) -> None:
    voice_dir = cache / "voices" / slug
    (prompt,) = json.loads((voice_dir / "voice.json").read_text())["prompts"].values()
    (voice_dir / prompt["file"]).write_bytes(b"not a safetensors file")


def test_a_failing_item_is_reported_and_the_others_continue(cache, tmp_path, capsys):
    _break_prompt(cache, "bob")
    script = tmp_path / "mixed.jsonl"
    script.write_text(
        '{"voice": "alice", "text": "First."}\n{"voice": "bob", "text": "Broken prompt."}\n'
        '{"voice": "alice", "text": "Third."}\n'
    )
    out = tmp_path / "out"
    assert batch(script, cache, out, "--seed", "1") == 1
    err = capsys.readouterr().err
    assert "mixed.jsonl:2 (item 2)" in err and "1 failed" in err
    items = {e["item"]: e for e in manifest(out)["items"]}
    assert items[2]["status"] == "failed" and items[2]["error"] and items[2]["files"] == []
    assert items[1]["status"] == items[3]["status"] == "done"
    # --fail-fast stops at the failing item; the ones after it stay pending
    out2 = tmp_path / "out2"
    assert batch(script, cache, out2, "--seed", "1", "--batch-size", "1", "--fail-fast") == 1
    statuses = [e["status"] for e in manifest(out2)["items"]]
    assert statuses == ["done", "failed", "pending"] and manifest(out2)["stopped_early"] is True


def test_dialogue_renders_into_one_file(cache, tmp_path, capsys):
    script = tmp_path / "scene.txt"
    script.write_text(
        "# a scene\n[alice] Hi Bob, are you ready?\n[bob] Almost.\n\n[alice]\nTake your time.\n"
        "We have all day.\n[narrator] And so they waited.\n"
    )
    out = tmp_path / "out"
    assert batch(script, cache, out, "--seed", "2", "--pause", "0:00.5") == 0  # m:ss like every time flag
    data = manifest(out)
    assert [e["voice"] for e in data["items"]] == ["alice", "bob", "alice", "alice", "narrator"]
    assert [e["line"] for e in data["items"]] == [2, 3, 6, 7, 8]
    final, rate = sf.read(out / "scene.wav")
    parts = [sf.read(out / e["files"][0])[0] for e in data["items"]]
    assert rate == 24000 and all(e["files"][0].startswith("scene.parts/") for e in data["items"])
    assert len(final) == sum(len(p) for p in parts) + 4 * int(0.5 * rate)
    assert data["dialogue"]["file"] == "scene.wav" and data["dialogue"]["lines"] == 5
    err = capsys.readouterr().err
    assert "dialogue:" in err
    for e in data["items"]:  # each item's file and its seed (as the manifest records it), after the run
        assert f"item {e['item']}: {out / e['files'][0]} (seed {e['seed']})" in err


def test_select_best_in_a_batch_records_the_scoreboard_and_never_picks_a_failing_take(
    cache, tmp_path, capsys
):
    script = tmp_path / "best.yaml"
    script.write_text('- {voice: alice, text: "Pick the best one.", variants: 2, output: pick}\n')
    out = tmp_path / "out"
    assert (
        batch(script, cache, out, "--seed", "4", "--select-best", "--qa-asr", "none") == 1
    )  # noise: none passes
    assert "check takes: started (2 takes): item 1" in capsys.readouterr().err  # the checks show progress
    (entry,) = manifest(out)["items"]
    assert entry["status"] == "failed" and "no take passed" in entry["error"]
    assert entry["files"] == ["pick.take_01.wav", "pick.take_02.wav"] and not (out / "pick.wav").exists()
    board = entry["scoreboard"]
    assert board["best_index"] is None and board["models"]["similarity_to"] == "reference"
    assert all(t["failures"] for t in board["takes"])


def test_take_checks_report_progress_per_item(cache, tmp_path):
    """--qa/--select-best: each item's checks are a "check takes" stage inside the "batch" stage."""
    from audiobox.batch import BatchOptions, parse_script, run_batch
    from audiobox.paths import Dirs
    from audiobox.tts.pool import ModelPool

    script = tmp_path / "qa.yaml"
    script.write_text(
        '- {voice: alice, text: "Check this one.", variants: 2, output: one}\n'
        '- {voice: bob, text: "And this one.", output: two}\n'
    )
    events = []
    options = BatchOptions(
        out_dir=tmp_path / "out", knobs={"max_new_tokens": 6}, seed=2, qa=True, judge_asr="none"
    )
    result = run_batch(
        parse_script(script), Dirs(cache, tmp_path / "work"), ModelPool(), options, progress=events.append
    )
    assert result.done + result.failed == 2
    checks = [e for e in events if e.stage == "check takes"]
    starts = [e for e in checks if e.phase == "start"]
    assert sorted((e.message, e.total, e.unit) for e in starts) == [
        ("item 1", 2, "takes"),
        ("item 2", 1, "takes"),
    ]
    assert [e.done for e in checks if e.phase == "update"].count(2) == 1  # item 1's second take scored
    assert sum(e.phase == "end" for e in checks) == 2 and all(e.message for e in checks if e.phase == "end")
    stages = [(e.stage, e.phase) for e in events if e.phase != "update"]
    assert stages[0] == ("batch", "start") and stages[-1] == ("batch", "end")  # inside the batch stage
