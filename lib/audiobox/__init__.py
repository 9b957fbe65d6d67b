"""py-audio-box: pull a clean voice out of a recording, register it, speak any text in it.

The public API is kept small and import-light; heavy modules (torch, qwen_tts) load only when a
function that needs them runs.
"""

__version__ = "0.1.0"

from audiobox.errors import UserError  # noqa: E402  (re-export)

__all__ = ["UserError", "__version__"]
