"""transcript_check.py AUDIO EXPECTED MAX_WER: exit 0 when faster-whisper hears EXPECTED in AUDIO.

Used by tests/local (real models). LOCAL_ASR_MODEL picks the Whisper model (default small.en;
with HF_HUB_OFFLINE=1 it must already be in the cache).
"""

import os
import re
import sys


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s']", " ", text.lower())).strip()


def main() -> int:
    audio, expected, max_wer = sys.argv[1], sys.argv[2], float(sys.argv[3])
    import jiwer
    from faster_whisper import WhisperModel

    model = WhisperModel(os.environ.get("LOCAL_ASR_MODEL", "small.en"), device="auto", compute_type="int8")
    segments, _ = model.transcribe(audio, language=os.environ.get("LOCAL_ASR_LANGUAGE", "en"), beam_size=1)
    heard = " ".join(s.text for s in segments)
    wer = jiwer.wer(normalise(expected), normalise(heard) or "-")
    print(f"  heard: {heard.strip()!r}  WER {wer:.2f} (max {max_wer})")
    return 0 if wer <= max_wer else 1


if __name__ == "__main__":
    sys.exit(main())
