"""Shared pytest fixtures. Keep this small; put builders in tests/fixtures/."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Tests are offline: never let transformers/huggingface_hub reach for the network (a missing
# local path would otherwise spend ~46 s in retries), and keep their log noise down.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
if str(FIXTURES_DIR) not in sys.path:
    sys.path.insert(0, str(FIXTURES_DIR))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """Directory holding every tiny model: <dir>/base, <dir>/custom_voice, <dir>/voice_design, ..."""
    from make_tiny_models import build_tiny_models

    out_dir = tmp_path_factory.mktemp("tiny_models")
    build_tiny_models(out_dir)
    return out_dir


@pytest.fixture(scope="session")
def speech_mix(tmp_path_factory):
    """Piper speech over music with silences at known positions (tests/fixtures/speech.py), built once."""
    from speech import build_speech_mix

    return build_speech_mix(tmp_path_factory.mktemp("speech_mix"))


@pytest.fixture(scope="session")
def tiny_demucs(tmp_path_factory) -> Path:
    """A local Demucs model repo holding a tiny random htdemucs (htdemucs.yaml + safetensors)."""
    from make_tiny_models import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny_demucs"), only=["demucs"])["demucs"]
