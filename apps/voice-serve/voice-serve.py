#!/usr/bin/env python3
"""voice-serve entry point: an OpenAI-compatible speech server with a voices API and a web page."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lib"))

from audiobox.cli.voice_serve import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
