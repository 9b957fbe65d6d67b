"""Metadata commands must not import torch or qwen_tts: they answer in well under a second."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECK = """
import sys
sys.path.insert(0, {lib!r})
from audiobox.cli.voice_synth import main
try:
    code = main({argv!r})
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("torch", "qwen_tts", "transformers", "faster_whisper", "demucs") if m in sys.modules)
print("HEAVY", heavy, "CODE", code)
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["speak", "--help"],
        ["list-voices"],
        ["list-voices", "--json"],
        ["list-speakers", "--json"],
        ["capabilities", "--json"],
    ],
)
def test_metadata_commands_do_not_import_torch(argv, tmp_path):
    full = argv if "--help" in argv else [*argv, "--cache", str(tmp_path)]
    out = subprocess.run(
        [sys.executable, "-c", CHECK.format(lib=str(ROOT / "lib"), argv=full)],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "HEAVY [] CODE 0" in out, out


def test_app_script_runs_from_a_checkout(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "apps/voice-synth/voice-synth.py"),
            "list-voices",
            "--json",
            "--cache",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and '"count": 0' in proc.stdout


def test_bad_input_exit_code_from_the_app_script(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "apps/voice-synth/voice-synth.py"),
            "delete-voice",
            "../etc",
            "--yes",
            "--cache",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "invalid voice name" in proc.stderr
