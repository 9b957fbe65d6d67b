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
