"""Where a fake vast.ai host keeps its filesystem (shared by fakevast.py and the ssh stand-in)."""

import re
from pathlib import Path

ROOT_DIRS = ("work", "app", "cache", "root", "opt")
_PATH_RE = re.compile(r"(?<![\w./-])/(" + "|".join(ROOT_DIRS) + r")(?=[/\s'\";:]|$)")


def localize(command: str, root: Path) -> str:
    """A command for the instance, with its absolute paths moved under the host folder."""
    return _PATH_RE.sub(lambda m: f"{root}/{m.group(1)}", command)
