"""One module per app: argument parsing only; the work happens in the library modules."""
