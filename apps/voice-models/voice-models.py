#!/usr/bin/env python3
"""voice-models entry point: list the models each app needs, download them."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lib"))

from audiobox.cli.voice_models import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
