#!/usr/bin/env bash
# scripts/vast.sh search|run|shell|status|reap|destroy ...: vast.ai runs (see docs/docker-and-cloud.md).
# Thin launcher for audiobox.cloud.vast (standard library only). Reads .env when present.
# `run` destroys the instance on every exit path unless --keep.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -f "$repo/.env" ]]; then
    set -a
    # shellcheck disable=SC1091
    source "$repo/.env"
    set +a
fi
python_bin="${PYTHON:-}"
if [[ -z "$python_bin" ]]; then
    if [[ -x "$repo/.venv/bin/python" ]]; then python_bin="$repo/.venv/bin/python"; else python_bin="python3"; fi
fi
# The venv's vastai CLI, when the cloud extra is installed there.
if [[ -x "$repo/.venv/bin/vastai" && -z "${VASTAI_BIN:-}" ]]; then
    export VASTAI_BIN="$repo/.venv/bin/vastai"
fi
export PAB_REPO="$repo"
export PYTHONPATH="$repo/lib${PYTHONPATH:+:$PYTHONPATH}"
exec "$python_bin" -m audiobox.cli.vast "$@"
