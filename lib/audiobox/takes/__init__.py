"""Judge TTS takes so the user does not have to listen to all of them.

Qwen3-TTS samples, so one take swallows its last words, another runs on, another drifts away from
the voice. `TakeJudge` scores every take of one text on five things and ranks them:

* intelligibility - a transcript (faster-whisper; PocketSphinx for English offline) against the text,
  as WER, or CER for Chinese/Japanese/Korean, after language-aware normalisation;
* speaker similarity - cosine of Resemblyzer (GE2E) embeddings against the voice's reference;
* acoustics - clipping, leading/trailing silence, loudness and SNR from `audiobox.quality`;
* pacing - speech duration against the pace expected for the language (`audiobox.languages`);
* runaway / truncation - repeated n-grams, reference words missing at the end, audio far longer
  or shorter than the text needs, and a take that stops mid-sound.

Some checks are *hard*: a take that fails one is never picked, whatever its score. The rest feed a
weighted score (weights in `WEIGHTS`). The ASR and speaker models are loaded once per judge, so a
batch run pays for them once.

Why Resemblyzer and not the Base model's own ECAPA speaker encoder: Resemblyzer's weights ship in
its wheel (17 MB, loads in ~0.03 s, no hub), it works the same for clone, CustomVoice and
VoiceDesign takes (the ECAPA encoder would mean loading a Base checkpoint for runs that use no
Base model), and it is an independent judge: the Base model is trained to make its output match
its own x-vector, so scoring with that same encoder grades the model with its own ruler. On Piper
speech Resemblyzer gives 0.92-0.94 for the same voice and 0.42-0.53 for espeak-ng voices.

The package: `text` (normalisation, WER/CER), `backends` (ASR), `judge`
(measures, checks, ranking) and `review` (a finished speak run: best file, scoreboard, words).
"""

from audiobox.speakers import SpeakerEncoder
from audiobox.takes.backends import (
    SphinxTranscriber,
    TakeTranscriber,
    WhisperTranscriber,
    WordTiming,
    load_transcriber,
)
from audiobox.takes.judge import (
    SCOREBOARD_VERSION,
    WEIGHTS,
    Check,
    JudgeOptions,
    Scoreboard,
    TakeJudge,
    TakeScore,
    Thresholds,
    measure_acoustics,
    rank_takes,
)
from audiobox.takes.review import Review, ReviewOptions, review_speak_result
from audiobox.takes.text import (
    TextMatch,
    compare_text,
    error_rate,
    normalize_text,
    resolve_language,
    tokenize,
)

__all__ = [
    "SCOREBOARD_VERSION",
    "WEIGHTS",
    "Check",
    "JudgeOptions",
    "Review",
    "ReviewOptions",
    "Scoreboard",
    "SpeakerEncoder",
    "SphinxTranscriber",
    "TakeJudge",
    "TakeScore",
    "TakeTranscriber",
    "TextMatch",
    "Thresholds",
    "WhisperTranscriber",
    "WordTiming",
    "compare_text",
    "error_rate",
    "load_transcriber",
    "measure_acoustics",
    "normalize_text",
    "rank_takes",
    "resolve_language",
    "review_speak_result",
    "tokenize",
]
