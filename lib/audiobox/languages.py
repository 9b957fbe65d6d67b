"""The ten Qwen3-TTS languages: names, codes, typical pace, and how sentences end.

Pace figures are characters of text per second of natural speech; they size token budgets and
judge whether a take's duration is plausible. CJK languages are counted in characters, the rest
in characters including spaces.
"""

from __future__ import annotations

from dataclasses import dataclass

from audiobox.errors import UserError, did_you_mean


@dataclass(frozen=True)
class Language:
    name: str  # Qwen's lower-case name, as config.json spells it
    code: str  # ISO 639-1, as Whisper reports it
    chars_per_second: float
    cjk: bool = False  # scored by character error rate; sentences may end without a space
    spaced: bool = True  # words separated by spaces (Korean is, Chinese and Japanese are not)


LANGUAGES: dict[str, Language] = {
    lang.name: lang
    for lang in (
        Language("english", "en", 14.0),
        Language("chinese", "zh", 4.5, cjk=True, spaced=False),
        Language("japanese", "ja", 7.0, cjk=True, spaced=False),
        Language("korean", "ko", 6.0, cjk=True),
        Language("german", "de", 14.0),
        Language("french", "fr", 14.5),
        Language("russian", "ru", 13.0),
        Language("portuguese", "pt", 14.5),
        Language("spanish", "es", 15.0),
        Language("italian", "it", 14.5),
    )
}
AUTO = "auto"
_BY_CODE = {lang.code: lang for lang in LANGUAGES.values()}


def normalize_language(value: str | None, allowed: list[str] | None = None) -> str:
    """Map 'English', 'en', 'auto', None... to Qwen's lower-case name; reject the unknown."""
    if value is None or value.strip().lower() in ("", AUTO):
        return AUTO
    key = value.strip().lower()
    name = _BY_CODE[key].name if key in _BY_CODE else key
    choices = allowed if allowed is not None else [AUTO, *LANGUAGES]
    if name not in choices:
        raise UserError(
            f"unknown language {value!r}{did_you_mean(key, choices)} (choose from {', '.join(choices)})"
        )
    return name


def language_for_code(code: str | None) -> Language | None:
    return _BY_CODE.get((code or "").lower())


def pace(language: str | None) -> Language:
    """The pace entry for a language; 'auto' or unknown falls back to English."""
    return LANGUAGES.get((language or "").lower(), LANGUAGES["english"])


def guess_language(text: str) -> str:
    """A cheap script-based guess, enough to pick a pace when the language is 'auto'."""
    counts = {"chinese": 0, "japanese": 0, "korean": 0, "russian": 0}
    for ch in text:
        cp = ord(ch)
        if 0x3040 <= cp <= 0x30FF:
            counts["japanese"] += 1
        elif 0xAC00 <= cp <= 0xD7AF or 0x1100 <= cp <= 0x11FF:
            counts["korean"] += 1
        elif 0x4E00 <= cp <= 0x9FFF:
            counts["chinese"] += 1
        elif 0x0400 <= cp <= 0x04FF:
            counts["russian"] += 1
    best = max(counts, key=counts.get)
    if counts[best] == 0:
        return "english"
    if best == "chinese" and counts["japanese"]:
        return "japanese"
    return best


def text_chars(text: str) -> int:
    """Characters that take time to say: letters/digits/CJK plus word gaps (collapsed whitespace)."""
    return len(" ".join(text.split()))


def expected_seconds(text: str, language: str | None = None) -> float:
    """How long natural speech of `text` lasts at the language's typical pace ('auto': guessed)."""
    lang = language if language and language != AUTO else guess_language(text)
    return text_chars(text) / pace(lang).chars_per_second


def pace_ratio(text: str, speech_s: float, language: str | None = None) -> float:
    """How much faster than the usual pace `text` was said in `speech_s` seconds (1 = typical)."""
    return expected_seconds(text, language) / max(speech_s, 0.25)
