"""Cloud GPU runs (vast.ai). Standard library only: usable without torch or the app dependencies."""
