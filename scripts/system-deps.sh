#!/usr/bin/env bash
# Installs the system programs the toolbox and its tests use (ffmpeg, sox, espeak-ng, rsync,
# chromium for the web-page test; python3-venv
# when `python3 -m venv` cannot work) from the distribution, when one is missing. `make test` and
# `make venv` run it first, so a fresh Debian/Ubuntu machine needs no other step. Needs root or
# password-less sudo for apt-get; otherwise it names what to install, and how, and stops.
# Usage: scripts/system-deps.sh [--check]   (--check: only report, install nothing)
set -euo pipefail

check_only=0
[[ "${1:-}" == --check ]] && check_only=1

missing=()
for tool in ffmpeg sox espeak-ng chromium rsync; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

echo "system-deps: missing ${missing[*]}" >&2
if [[ $check_only == 1 ]]; then
    exit 1
fi

as_root=()
if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
        as_root=(sudo)
    else
        as_root=(none)
    fi
fi
if ! command -v apt-get >/dev/null 2>&1 || [[ "${as_root[0]:-}" == none ]]; then
    {
        if command -v apt-get >/dev/null 2>&1; then
            echo "system-deps: installing needs root: run 'sudo make system-deps' (or: sudo apt-get install ${missing[*]}), then this again"
        else
            echo "system-deps: no apt-get here: install ${missing[*]} with your package manager"
            echo "  (macOS: brew install ffmpeg sox espeak-ng chromium rsync), then run this again"
        fi
    } >&2
    exit 2
fi

echo "system-deps: apt-get install ${missing[*]}" >&2
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
exec "$0" --check
