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
def conversation(tmp_path_factory):
    """Piper and espeak-ng voices taking turns, with overlap and music (tests/fixtures/conversation.py)."""
    from conversation import build_conversation

    return build_conversation(tmp_path_factory.mktemp("conversation"))


@pytest.fixture(scope="session")
def speaker_encoder():
    """Resemblyzer's encoder, loaded once for the session."""
    from audiobox.speakers import SpeakerEncoder

    return SpeakerEncoder()


@pytest.fixture(scope="session")
def tiny_demucs(tmp_path_factory) -> Path:
    """A local Demucs model repo holding a tiny random htdemucs (htdemucs.yaml + safetensors)."""
    from make_tiny_models import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny_demucs"), only=["demucs"])["demucs"]


@pytest.fixture(scope="session")
def media_site(speech_mix, tmp_path_factory):
    """A 127.0.0.1-only web server (fixtures/loopback.py: ranges, bytes counted) serving the speech
    mix, a long recording (`long.wav`: the mix ten times, 7.7 min), not-media and playlist pages, so
    the real yt-dlp path runs offline. Yields (base URL, handler class); stopped on teardown."""
    import shutil

    import numpy as np
    import soundfile as sf
    from loopback import file_server, serve_on_loopback

    root = tmp_path_factory.mktemp("www")
    shutil.copy(speech_mix.mp3, root / "podcast.mp3")
    shutil.copy(speech_mix.path, root / "podcast.wav")
    shutil.copy(speech_mix.music_only, root / "music_only.wav")
    mix, rate = sf.read(speech_mix.path, dtype="int16")
    sf.write(root / "long.wav", np.tile(mix, 10), rate, subtype="PCM_16")
    (root / "notes.txt").write_text("this is not media\n" * 100)
    (root / "page.html").write_text("<html><body><p>no media here</p></body></html>")
    (root / "list.html").write_text(
        '<html><body><video src="podcast.mp3"></video><audio src="podcast.wav"></audio></body></html>'
    )
    handler = file_server(root)
    with serve_on_loopback(handler) as url:
        yield url, handler


@pytest.fixture(scope="session")
def loopback_media(media_site):
    """The base URL of `media_site`."""
    return media_site[0]
