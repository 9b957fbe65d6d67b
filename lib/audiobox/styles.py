"""Named instruction presets (styles.yaml) for --instruct-style."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from audiobox.errors import UserError, did_you_mean
from audiobox.paths import app_command

STYLES_PATH = Path(__file__).with_name("styles.yaml")


@cache
def load_styles(path: Path = STYLES_PATH) -> dict[str, str]:
    import yaml

    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {
        name: (entry["instruct"] if isinstance(entry, dict) else str(entry)) for name, entry in raw.items()
    }


def style_instruct(name: str) -> str:
    styles = load_styles()
    key = name.strip().lower()
    if key not in styles:
        raise UserError(
            f"unknown instruct style {name!r}{did_you_mean(name, styles)} "
            f"(choose from {', '.join(sorted(styles))}; `{app_command('voice-synth')} list-styles` shows what each says)"
        )
    return styles[key]


def resolve_instruct(instruct: str | None, style: str | None) -> tuple[str | None, str]:
    """(instruct text, where it came from) from --instruct / --instruct-style."""
    if instruct and style:
        raise UserError("use either --instruct or --instruct-style, not both")
    if style:
        return style_instruct(style), f"style:{style}"
    if instruct is not None:
        if not instruct.strip():
            raise UserError("--instruct is empty")
        return instruct.strip(), "explicit"
    return None, "none"
