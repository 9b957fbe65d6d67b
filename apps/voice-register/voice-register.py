#!/usr/bin/env python3
"""voice-register entry point: link or file -> clips -> clone prompt -> test sentence, in one process."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lib"))

from audiobox.cli.voice_register import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
