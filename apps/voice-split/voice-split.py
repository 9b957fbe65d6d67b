#!/usr/bin/env python3
"""voice-split entry point: clean voice clips from a link or a recording (optionally a registered voice)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lib"))

from audiobox.cli.voice_split import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
