"""Text against a transcript: language-aware normalisation, WER/CER, truncation and runaway evidence.

The one place the toolbox compares words with words: take checks, `--verify-ref-text` and the
voice-clone self-test all go through `error_rate` / `compare_text`.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from audiobox.errors import UserError
from audiobox.languages import LANGUAGES, guess_language

_APOSTROPHES = "'’‘`´ʼ"
CJK_LANGS = {name for name, lang in LANGUAGES.items() if lang.cjk}


def resolve_language(text: str, language: str | None) -> str:
    lang = (language or "auto").lower()
    return lang if lang in LANGUAGES else guess_language(text)


def normalize_text(text: str, language: str) -> str:
    """Case-fold and strip punctuation the way all ten languages tolerate.

    NFKC folds full-width forms (CJK punctuation, full-width digits); apostrophes are dropped so
    "don't"/"dont" and "l'homme"/"lhomme" agree; hyphens and other punctuation become spaces;
    Russian ё is read as е (transcripts rarely write it). Digits are kept as they are.
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    if language == "russian":
        text = text.replace("ё", "е")
    text = "".join("" if ch in _APOSTROPHES else ch for ch in text)
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        out.append(" " if cat[0] in "PSZC" else ch)
    return re.sub(r"\s+", " ", "".join(out)).strip()


def tokenize(text: str, language: str) -> list[str]:
    """Words for alphabetic languages, characters for Chinese/Japanese/Korean (CER)."""
    norm = normalize_text(text, language)
    if language in CJK_LANGS:
        return [ch for ch in norm if not ch.isspace()]
    return norm.split()


@dataclass
class TextMatch:
    metric: str
    error_rate: float
    missing_tail: int
    tail_limit: int
    repeat_excess: int
    ref_tokens: int
    hyp_tokens: int


def compare_text(reference: str, hypothesis: str, language: str) -> TextMatch:
    """WER/CER of a transcript, plus the truncation and runaway evidence the alignment holds."""
    import jiwer

    language = resolve_language(reference, language)
    metric = "cer" if language in CJK_LANGS else "wer"
    ref, hyp = tokenize(reference, language), tokenize(hypothesis, language)
    tail_limit = max(3 if metric == "cer" else 2, math.ceil(0.15 * len(ref)))
    if not ref:
        raise UserError("cannot judge a take of an empty text")
    if not hyp:
        return TextMatch(metric, 1.0, len(ref), tail_limit, 0, len(ref), 0)
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    # Truncation: text tokens after the last one the transcript got right.
    last_equal = max((chunk.ref_end_idx for chunk in out.alignments[0] if chunk.type == "equal"), default=0)
    missing_tail = len(ref) - last_equal
    n = 4 if metric == "cer" else 3
    return TextMatch(
        metric,
        float(out.wer),
        missing_tail,
        tail_limit,
        max(0, _repeats(hyp, n) - _repeats(ref, n)),
        len(ref),
        len(hyp),
    )


def _repeats(tokens: Sequence[str], n: int) -> int:
    """How many n-gram occurrences repeat an earlier one (a looping take repeats many)."""
    seen: set[tuple] = set()
    repeats = 0
    for i in range(len(tokens) - n + 1):
        gram = tuple(tokens[i : i + n])
        repeats += gram in seen
        seen.add(gram)
    return repeats


def error_rate(reference: str, hypothesis: str, language: str | None = "auto") -> float:
    """WER of a transcript (CER for Chinese/Japanese/Korean); 1.0 when the reference has no words."""
    language = resolve_language(reference, language)
    if not tokenize(reference, language):
        return 1.0
    return compare_text(reference, hypothesis, language).error_rate
