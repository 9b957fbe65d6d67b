"""Qwen3-TTS: model facts (no torch), runtime loading, generation settings, synthesis."""
