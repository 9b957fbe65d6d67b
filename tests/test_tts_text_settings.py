"""Chunking for the ten languages, token budgets, settings precedence, progress per frame."""

from __future__ import annotations

import pytest
from audiobox.errors import UserError
from audiobox.tts.settings import HARD_MAX_NEW_TOKENS, resolve_settings, token_budget
from audiobox.tts.text import chunk_text, clean_text

SAMPLES = {
    "english": "The first sentence is here. The second one follows! Does a third exist? Yes.",
    "german": "Der erste Satz ist hier. Der zweite folgt! Gibt es einen dritten? Ja.",
    "french": "La première phrase est ici. La deuxième suit ! Existe-t-il une troisième ? Oui.",
    "spanish": "¿La primera frase está aquí? La segunda sigue. ¡Hay una tercera! Sí.",
    "italian": "La prima frase è qui. La seconda segue! Ce n'è una terza? Sì.",
    "portuguese": "A primeira frase está aqui. A segunda segue! Existe uma terceira? Sim.",
    "russian": "Первое предложение здесь. Второе следует! Есть ли третье? Да.",
    "chinese": "第一句话在这里。第二句话紧随其后！有第三句吗？有的。",
    "japanese": "最初の文はここです。二番目の文が続きます！三番目はありますか？はい。",
    "korean": "첫 번째 문장이 여기 있습니다. 두 번째 문장이 이어집니다! 세 번째가 있나요? 네.",
}


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_chunks_end_at_sentence_boundaries_in_every_language(language):
    text = SAMPLES[language]
    chunks = chunk_text(text, max_chars=len(text) // 2, language=language)
    assert len(chunks) >= 2
    joiner = "" if language in ("chinese", "japanese") else " "
    assert joiner.join(chunks) == text
    enders = ".!?。！？" if language != "spanish" else ".!?"
    assert all(chunk.rstrip()[-1] in enders for chunk in chunks[:-1])


def test_over_long_sentences_split_at_clauses_then_words():
    sentence = "word " * 100 + "and, after a comma, " + "more " * 30
    chunks = chunk_text(sentence.strip() + ".", max_chars=120)
    assert all(len(c) <= 120 for c in chunks)
    assert " ".join(chunks).split() == (sentence.strip() + ".").split()


def test_clean_text_rejects_nothing_to_say():
    for bad in ("", "   ", "...!!", None):
        with pytest.raises(UserError):
            clean_text(bad)


def test_budget_scales_with_text_and_language_and_is_capped():
    short, longer = token_budget("Hi."), token_budget("A much longer sentence. " * 10)
    assert short < longer <= HARD_MAX_NEW_TOKENS
    assert token_budget("你" * 60, "chinese") > token_budget("a" * 60, "english")  # slower pace per character
    assert token_budget("x" * 50_000) == HARD_MAX_NEW_TOKENS


def test_settings_precedence_profile_voice_explicit():
    settings, source = resolve_settings(None, {"profile": "stable", "temperature": 0.5}, top_p=0.6)
    assert settings.profile == "stable" and settings.temperature == 0.5 and settings.top_p == 0.6
    assert settings.repetition_penalty == 1.12
    assert source == {"profile": "voice_default", "temperature": "voice_default", "top_p": "explicit"}
    stable, _ = resolve_settings("stable")
    expressive, _ = resolve_settings("expressive")
    assert stable.budget_for("Some text to say.") < expressive.budget_for("Some text to say.")
    with pytest.raises(UserError, match="unknown profile"):
        resolve_settings("wild")
    greedy, _ = resolve_settings(greedy=True)
    assert greedy.generate_kwargs("x")["do_sample"] is False


def test_progress_reports_frames_for_each_chunk(tiny_models):
    from audiobox.tts.runtime import load_tts
    from audiobox.tts.settings import GenerationSettings
    from audiobox.tts.synth import Synthesizer, VoiceSpec

    synth = Synthesizer(load_tts(str(tiny_models / "custom_voice"), kind="custom_voice"))
    events = []
    takes = synth.speak(
        "First sentence here. " * 12,
        VoiceSpec.builtin("ryan"),
        settings=GenerationSettings(max_new_tokens=6),
        chunk=True,
        seed=5,
        progress=events.append,
    )
    chunks = [f"chunk {i + 1}/{len(takes[0].chunks)}" for i in range(len(takes[0].chunks))]
    assert [e.message for e in events if e.phase == "start"] == chunks
    assert [e.phase for e in events if e.phase != "update"] == ["start", "end"] * len(chunks)
    frames = [e for e in events if e.phase == "update"]
    assert {e.message for e in frames} == set(chunks) and {(e.stage, e.unit) for e in events} == {
        ("synthesize", "frames")
    }
    assert all(e.total == 6 and 0 < e.done <= 6 for e in frames)
