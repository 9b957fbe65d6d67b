#!/usr/bin/env python3
"""voice-clone entry point: reference recording -> checked reference -> clone prompt -> speech."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lib"))

from audiobox.cli.voice_clone import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
