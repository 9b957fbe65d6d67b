#!/usr/bin/env python3
"""voice-synth entry point: speak with registered voices or built-in speakers; manage voices."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lib"))

from audiobox.cli.voice_synth import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
