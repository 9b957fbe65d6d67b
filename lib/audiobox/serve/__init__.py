"""voice-serve: an OpenAI-compatible speech server over the library (see app.py)."""
