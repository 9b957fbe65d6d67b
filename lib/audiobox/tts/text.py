"""Splitting long text into sentence-aligned chunks, for any of the ten Qwen3-TTS languages."""

from __future__ import annotations

import re

from audiobox.errors import UserError
from audiobox.languages import guess_language, pace

# Sentence ends: Latin/Cyrillic punctuation followed by space, or CJK full-width marks (no space needed).
_SENTENCE_END = re.compile(r"(?<=[.!?…;])[\"'”’»)\]]*\s+|(?<=[。！？；])[」』”’）]*\s*|\n\s*\n")
_CLAUSE_END = re.compile(r"(?<=[,:—–])\s+|(?<=[，、：])")
DEFAULT_MAX_CHARS = 220
CJK_MAX_CHARS = 80
MAX_TEXT_CHARS = 100_000


def clean_text(text: str) -> str:
    """Collapse whitespace; reject text that has nothing to say."""
    if text is None or not text.strip():
        raise UserError("the text is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise UserError(
            f"the text is {len(text)} characters; split it (limit {MAX_TEXT_CHARS}) or use `batch`"
        )
    if not any(ch.isalnum() for ch in text):
        raise UserError("the text has no letters or digits to speak")
    return re.sub(r"[ \t\r\f\v]+", " ", text.replace("\r\n", "\n")).strip()


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def _split_long(sentence: str, max_chars: int, joiner: str) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    pieces, current = [], ""
    for clause in (c for c in _CLAUSE_END.split(sentence) if c):
        for part in [clause] if len(clause) <= max_chars else _hard_wrap(clause, max_chars):
            if current and len(current) + len(part) + 1 > max_chars:
                pieces.append(current.strip())
                current = ""
            current = f"{current}{joiner}{part}" if current else part
    if current.strip():
        pieces.append(current.strip())
    return pieces


def _hard_wrap(text: str, max_chars: int) -> list[str]:
    words = text.split(" ")
    if len(words) == 1:  # CJK or one huge token: cut by characters
        return [text[i : i + max_chars] for i in range(0, len(text), max_chars)]
    out, line = [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > max_chars:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return out + ([line] if line else [])


def chunk_text(text: str, max_chars: int | None = None, language: str | None = None) -> list[str]:
    """Pack whole sentences into chunks of at most max_chars (long sentences split at clauses)."""
    lang = language if language and language != "auto" else guess_language(text)
    limit = max_chars or (CJK_MAX_CHARS if pace(lang).cjk else DEFAULT_MAX_CHARS)
    joiner = " " if pace(lang).spaced else ""
    chunks, current = [], ""
    for sentence in split_sentences(text):
        for piece in _split_long(sentence, limit, joiner):
            if current and len(current) + len(joiner) + len(piece) > limit:
                chunks.append(current)
                current = piece
            else:
                current = f"{current}{joiner}{piece}" if current else piece
    if current:
        chunks.append(current)
    return chunks
