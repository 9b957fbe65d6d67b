"""audiobox.hub decides for every model loader; voice-models lists and downloads (against a loopback hub)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from audiobox import hub
from audiobox.errors import UserError
from fake_hub import FakeHub

REPO = Path(__file__).resolve().parents[1]


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    "value, offline", [("1", True), ("true", True), ("YES", True), ("on", True), ("0", False), ("", False)]
)
def test_offline_reads_the_variable_like_huggingface_hub(monkeypatch, value, offline):
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert hub.offline() is offline
    assert hub.state().mode == "offline" if offline else hub.state(timeout=0.5).mode != "offline"


def test_endpoint_and_cache_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert hub.endpoint() == "https://huggingface.co" and not hub.is_mirror()
    monkeypatch.setenv("HF_ENDPOINT", "https://mirror.example/")
    assert hub.endpoint() == "https://mirror.example" and hub.is_mirror()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub.cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert hub.cache_dir() == tmp_path / "elsewhere"


def test_a_reachable_mirror_is_online_and_a_dead_one_is_not(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with FakeHub({}) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        assert hub.state().mode == "mirror" and hub.state().can_download
    monkeypatch.setenv("HF_ENDPOINT", closed_port_url())
    current = hub.state(timeout=1)
    assert current.mode == "unreachable" and "cannot be reached" in current.describe()


def loaders_refusal(tmp_path) -> list[str]:
    """The error each model family gives for a model that is not cached."""
    from audiobox import asr, separate
    from audiobox.tts.models import read_model_info
    from audiobox.tts.runtime import ensure_available

    messages = []
    for attempt in (
        lambda: ensure_available(read_model_info("Qwen/Qwen3-TTS-12Hz-0.6B-Base")),
        lambda: asr.locate_model("tiny", tmp_path / "asr"),
        lambda: separate.hub_model_files("htdemucs", download=True),
    ):
        with pytest.raises(UserError) as caught:
            attempt()
        messages.append(str(caught.value))
    return messages


def test_every_loader_gives_the_same_way_out(monkeypatch, tmp_path):
    """Qwen3-TTS, Whisper and Demucs all ask audiobox.hub: same reason, the download command, the real cache."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    tts, whisper, demucs = loaders_refusal(tmp_path)
    assert "voice-models download Qwen/Qwen3-TTS-12Hz-0.6B-Base" in tts
    assert "voice-models download tiny" in whisper and "voice-models download htdemucs" in demucs
    for message in (tts, demucs):
        assert f"({tmp_path / 'hf' / 'hub'})" in message and "HF_HUB_OFFLINE=1" in message
    assert f"({tmp_path / 'asr'})" in whisper and "HF_HUB_OFFLINE=1" in whisper
    assert "<cache>" not in tts + whisper + demucs
    monkeypatch.setenv("AUDIOBOX_LAUNCHER", "./run-direct")  # started by ./run-direct: the command says so
    assert all("`./run-direct voice-models download " in message for message in loaders_refusal(tmp_path))
    monkeypatch.delenv("AUDIOBOX_LAUNCHER")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", closed_port_url())  # a mirror that does not answer
    for message in loaders_refusal(tmp_path):
        assert "cannot be reached" in message and "(mirror)" in message
    assert time.monotonic() - started < 20


def run_app(app: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "apps" / app / f"{app}.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_models_download_from_a_mirror_then_the_apps_run_offline(tiny_models, tmp_path, monkeypatch, capsys):
    """Models come from HF_ENDPOINT (voice-models download, and Demucs loading on its own); then
    voice-models list says cached, a second download asks the hub nothing, and speak runs offline."""
    from audiobox.catalog import select
    from audiobox.cli.voice_models import main as models
    from audiobox.cli.voice_synth import main as synth

    repos = {
        "Qwen/Qwen3-TTS-12Hz-0.6B-Base": tiny_models / "base",
        "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice": tiny_models / "custom_voice",
        "Systran/faster-whisper-small": tiny_models / "whisper",
        "adefossez/HTDemucs": tiny_models / "demucs",
    }
    assert [m.name for m in select([], None, False)] == [*list(repos)[:2], "small", "htdemucs"]
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "AUDIOBOX_"))}
    env.update(HF_HUB_OFFLINE="0", HF_HOME=str(cache / "huggingface"), PYTHONPATH=str(REPO / "lib"))
    with FakeHub(repos) as fake:
        env["HF_ENDPOINT"] = fake.url
        names = [*list(repos)[:2], "small"]
        done = run_app("voice-models", "download", *names, "--cache", str(cache), "--json", env=env)
        assert done.returncode == 0, done.stderr
        fetched = {m["name"]: Path(m["path"]) for m in json.loads(done.stdout)["models"]}
        # progress through audiobox.progress (stderr is a pipe: plain lines), not huggingface_hub's bars
        for repo in [*list(repos)[:2], "Systran/faster-whisper-small"]:
            assert re.search(rf"\] download: started \([\d.]+ MB\): {re.escape(repo)}\n", done.stderr), (
                done.stderr
            )
        assert done.stderr.count("] download: done in") == 3 and "Fetching" not in done.stderr
        assert (fetched["small"] / "model.bin").is_file() and str(cache / "asr") in str(fetched["small"])
        assert (fetched[names[1]] / "config.json").is_file()

        # Demucs loads from the mirror too (it probed huggingface.co only, and was refused)
        code = "from audiobox.separate import load_separator; print(load_separator().name)"
        loaded = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
        )
        assert loaded.returncode == 0 and loaded.stdout.strip() == "htdemucs", loaded.stderr

        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        monkeypatch.setenv("HF_HOME", str(cache / "huggingface"))
        before = len(fake.requests)
        assert models(["download", "--cache", str(cache)]) == 0
        assert len(fake.requests) == before  # everything cached: not one request

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    capsys.readouterr()
    assert models(["list", "--cache", str(cache), "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["models"]}
    assert all(row["cached"] for row in rows.values() if row["default"])
    assert not rows["Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign"]["cached"]
    args = ["speak", "--speaker", "ryan", "--text", "Hi there.", "--cache", str(cache)]
    assert synth([*args, "--out", str(tmp_path / "work"), "--max-new-tokens", "8"]) == 0


def test_models_command_names_its_mistakes(capsys):
    from audiobox.cli.voice_models import main

    assert main(["download", "htdemuc"]) == 2
    assert "did you mean 'htdemucs'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["download", "--app", "voice-spilt"])
    assert exited.value.code == 2 and "voice-split" in capsys.readouterr().err


def test_an_asr_model_fetched_on_first_use_reports_its_bytes(tiny_models, tmp_path, monkeypatch):
    """A Whisper model downloaded when an app first needs it is a "download" stage (audiobox.progress)
    sized from the hub's listing, and huggingface_hub's own bars stay off the terminal."""
    from audiobox.asr import WHISPER_FILES, locate_model

    whisper = tiny_models / "whisper"
    wanted = sum(p.stat().st_size for p in whisper.iterdir() if any(p.match(w) for w in WHISPER_FILES))
    events = []
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)  # read once at its import
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with FakeHub({"Systran/faster-whisper-small": whisper}) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        found = locate_model("small", tmp_path / "asr", progress=events.append)
    assert (found / "model.bin").is_file()
    start, end = events[0], events[-1]
    assert (start.stage, start.phase, start.unit, start.total) == ("download", "start", "bytes", wanted)
    assert start.message == "Systran/faster-whisper-small" and (end.stage, end.phase) == ("download", "end")
    assert all(e.done <= wanted for e in events if e.phase == "update")
