"""voice-split CLI: in-process runs (registration, interactive pick, bad input) + one real subprocess run."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from audiobox.cli.voice_split import main as _main
from audiobox.voices import VoiceRegistry

REPO = Path(__file__).resolve().parents[1]


def main(argv) -> int:
    """The CLI in-process; argparse usage errors exit through SystemExit like in a real run."""
    try:
        return _main(argv)
    except SystemExit as exc:
        return int(exc.code)


def _dirs(tmp_path):
    return ["--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_split_and_register(speech_mix, tmp_path, capsys):
    rc = main(
        [
            "--audio",
            str(speech_mix.path),
            "--clips",
            "2",
            "--length",
            "6",
            "--no-separate",
            "--voice-name",
            "joe",
            "--display-name",
            "Joe",
            "--json",
            *_dirs(tmp_path),
        ]
    )
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["voice"] == "joe" and len(data["clips"]) == 2 and data["sample_rate"] == 24000
    out = Path(data["out_dir"])
    assert out == tmp_path / "out" / "joe" and (out / "clips.json").is_file()
    voice = VoiceRegistry(tmp_path / "cache" / "voices").get("joe")
    assert voice.display_name == "Joe" and voice.engine == "clone_prompt" and not voice.ready
    info = sf.info(voice.ref_wav)
    assert info.samplerate == 24000 and info.channels == 1
    assert voice.data["source"]["type"] == "file" and voice.data["source"]["n_clips"] == 2
    assert abs(voice.ref["duration_sec"] - data["reference"]["duration"]) < 0.01

    # the same name again: refused before any work unless --force
    rc = main(["--audio", str(speech_mix.path), "--voice-name", "joe", "--no-separate", *_dirs(tmp_path)])
    assert rc == 2 and "already exists" in capsys.readouterr().err
    rc = main(
        [
            "--audio",
            str(speech_mix.clean_speech),
            "--clips",
            "1",
            "--length",
            "6",
            "--no-separate",
            "--voice-name",
            "joe",
            "--force",
            *_dirs(tmp_path),
        ]
    )
    assert rc == 0
    assert (
        VoiceRegistry(tmp_path / "cache" / "voices")
        .get("joe")
        .data["source"]["path"]
        .endswith("clean_speech.wav")
    )


def test_interactive_pick(speech_mix, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("9\n2\n"))
    rc = main(
        [
            "--audio",
            str(speech_mix.path),
            "--clips",
            "3",
            "--length",
            "6",
            "--no-separate",
            "--voice-name",
            "pick",
            "--interactive",
            "--json",
            *_dirs(tmp_path),
        ]
    )
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    second = data["clips"][1]
    assert data["reference"]["start"] == second["start"] and data["reference"]["end"] == second["end"]
    ref = VoiceRegistry(tmp_path / "cache" / "voices").get("pick").ref_wav
    assert abs(sf.info(ref).duration - second["duration"]) < 0.01
    # the file on disk records the pick too (it used to keep the automatic reference)
    saved = json.loads((Path(data["out_dir"]) / "clips.json").read_text())
    assert saved["reference"]["start"] == second["start"] and saved["reference"]["end"] == second["end"]
    assert saved["reference"]["chosen_by"] == "user" and saved["reference"]["file"] == "reference.wav"
    assert abs(sf.info(Path(data["out_dir"]) / "reference.wav").duration - second["duration"]) < 0.01


@pytest.mark.parametrize(
    "args,match",
    [
        (["--voice-name", "Bad Name!"], "invalid voice name"),
        (["--interactive"], "--interactive"),
        (["--start", "5:00"], "past the end"),
        (["--start", "abc"], "bad timestamp"),
        (["--clips", "-1"], "must be at least 0"),
    ],
)
def test_bad_arguments_fail_before_work(speech_mix, tmp_path, capsys, args, match):
    rc = main(["--audio", str(speech_mix.path), "--no-separate", *args, *_dirs(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and match in err and len(err.strip().splitlines()) <= 2  # usage errors: 1 line
    assert not _files(tmp_path / "cache" / "split") and not _files(tmp_path / "cache" / "voices")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "source,match",
    [
        ("music_only.wav", "no speech"),
        ("list.html", "playlist"),
        ("missing.mp3", "404"),
        ("notes.txt", "not audio or video"),
    ],
)
def test_bad_sources_register_nothing(loopback_media, tmp_path, capsys, source, match):
    rc = main(
        ["--url", f"{loopback_media}/{source}", "--no-separate", "--voice-name", "bad", *_dirs(tmp_path)]
    )
    err = capsys.readouterr().err
    assert rc == 2 and match in err and "Traceback" not in err
    assert not (tmp_path / "cache" / "voices" / "bad").exists()
    leftovers = [p for p in _files(tmp_path / "cache") if ".partial" in str(p) or p.name.endswith(".tmp")]
    assert not leftovers


def test_app_end_to_end_from_a_link(loopback_media, tiny_demucs, tmp_path):
    """The real thing as a user runs it: app script, yt-dlp over loopback, Demucs in-process, registry."""
    cmd = [
        sys.executable,
        str(REPO / "apps" / "voice-split" / "voice-split.py"),
        "--url",
        f"{loopback_media}/podcast.mp3",
        "--start",
        "0:24",
        "--end",
        "46",
        "--clips",
        "2",
        "--length",
        "6",
        "--windows",
        "1",
        "--window-len",
        "12",
        "--demucs-repo",
        str(tiny_demucs),
        "--separator-threads",
        "1",
        "--voice-name",
        "from-link",
        *_dirs(tmp_path),
    ]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "AUDIOBOX_PROGRESS_SECONDS": "0"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "registered voice 'from-link'" in proc.stderr and "Demucs ran on" in proc.stderr
    # stderr is a pipe here, as in a log or CI: every stage as plain lines, with its progress
    lines = proc.stderr.splitlines()
    for stage in ("download", "speech map (VAD)", "speakers", "vocals (Demucs)", "export clips"):
        assert any(f"] {stage}: started" in line for line in lines), (stage, proc.stderr)
        assert any(f"] {stage}: done in" in line for line in lines), (stage, proc.stderr)
    assert any(re.search(r"\] download: +\d+% \([\d.]+ MB of [\d.]+ MB\)$", line) for line in lines)
    assert any(re.search(r"\] vocals \(Demucs\): +\d+% \(\d+ s of \d+ s\)$", line) for line in lines)
    assert "\x1b[" not in proc.stderr  # no terminal control codes in a log
    manifest = json.loads((tmp_path / "out" / "from-link" / "clips.json").read_text())
    assert manifest["source"]["type"] == "url" and manifest["stats"]["separated_s"] <= 12.6
    assert all(24 <= c["start"] and c["end"] <= 46 for c in manifest["clips"])
    downloads = list((tmp_path / "cache" / "downloads").rglob("*.mp3"))
    assert len(downloads) == 1
    voice = VoiceRegistry(tmp_path / "cache" / "voices").get("from-link")
    assert voice.data["source"]["url"].endswith("podcast.mp3")
    # only 0:24-0:46 was downloaded (the mp3's end, 45.98 s, rounds the trim's end)
    assert voice.data["source"]["trim"] == pytest.approx([24.0, 46.0], abs=0.05)
    assert voice.data["source"]["downloaded_range"] == [24.0, 46.0]


def test_missing_demucs_model_fails_before_download(loopback_media, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc = main(["--url", f"{loopback_media}/podcast.mp3", "--voice-name", "nodemucs", *_dirs(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "--demucs-repo" in err
    assert not _files(tmp_path / "cache" / "downloads") and not _files(tmp_path / "cache" / "voices")


def test_registered_voice_feeds_voice_clone(speech_mix, tiny_models, tmp_path, capsys):
    """The printed next step: voice-clone transcribes the split reference and builds the prompt."""
    rc = main(
        [
            "--audio",
            str(speech_mix.path),
            "--clips",
            "1",
            "--length",
            "8",
            "--no-separate",
            "--voice-name",
            "chain",
            *_dirs(tmp_path),
        ]
    )
    err = capsys.readouterr().err
    line = [ln.strip() for ln in err.splitlines() if ln.strip().startswith("voice-clone synth")][0]
    assert line.startswith("voice-clone synth --voice chain ")
    voice_dir = tmp_path / "cache" / "voices" / "chain"
    assert (voice_dir / "source.wav").is_file()
    from audiobox.cli.voice_clone import main as clone_main

    argv = [a if a != "..." else "Hello there." for a in __import__("shlex").split(line)[1:]]
    rc = clone_main(
        argv
        + [
            "--out",
            str(tmp_path / "out"),
            "--model",
            str(tiny_models / "base"),
            "--asr-model",
            str(tiny_models / "whisper"),
            "--force-bad-ref",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    voice = VoiceRegistry(tmp_path / "cache" / "voices").get("chain")
    assert voice.ready and voice.ref["transcript"] and voice.data["source"]["type"] == "file"  # origin kept
