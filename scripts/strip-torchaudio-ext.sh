#!/usr/bin/env bash
# qwen-tts imports torchaudio only for its pure-Python kaldi features. PyPI's torchaudio wheel is a
# CUDA build whose compiled extension cannot load beside the CPU torch (or a torch of another
# version), so its .so files are removed: the Python part then imports cleanly.
set -euo pipefail
python_bin="${1:-python3}"
purelib="$("$python_bin" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
rm -f "$purelib"/torchaudio/lib/*.so
