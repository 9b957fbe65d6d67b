#!/usr/bin/env bash
# Helpers for tests/local/NN-*.sh (sourced). Real models, real outputs: every check looks at the
# audio (duration, sample rate) and, where it matters, at what was said (faster-whisper + WER).
#   RUNNER      ./run-direct (default) or ./run (Docker; paths under ./work appear as /work)
#   LOCAL_OUT   where the suites write (default: work/local-tests), removed per suite
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
RUNNER="${RUNNER:-./run-direct}"
SUITE="$(basename "${0%.sh}")"
HOST_OUT="${LOCAL_OUT:-$REPO/work/local-tests}/$SUITE"
# The path the app sees: inside Docker ./work is /work.
if [[ "$RUNNER" == *"/run" || "$RUNNER" == run ]]; then
    APP_OUT="/work/${HOST_OUT#"$REPO/work/"}"
else
    APP_OUT="$HOST_OUT"
fi
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3
CHECKS=0

rm -rf "$HOST_OUT"
mkdir -p "$HOST_OUT"
cd "$REPO"

fail() { echo "FAIL [$SUITE]: $*" >&2; exit 1; }
note() { echo "[$SUITE] $*"; }

# app APP ARGS...: runs the app through $RUNNER; a non-zero exit fails the suite.
app() {
    note "\$ $RUNNER $*" >&2
    "$RUNNER" "$@" || fail "exit $? from: $*"
}

# host_path PATH: the host path of a file the app reported (maps /work/... back under ./work).
host_path() {
    local p="$1"
    if [[ "$APP_OUT" != "$HOST_OUT" && "$p" == /work/* ]]; then p="$REPO/work/${p#/work/}"; fi
    echo "$p"
}

# result_file JSON: the first output file listed in a --json-result file.
result_file() {
    "$PYTHON" -c 'import json,sys; d=json.load(open(sys.argv[1])); print((d.get("files") or [d.get("best") or ""])[0])' "$1"
}

duration_of() { soxi -D "$1" 2>/dev/null || ffprobe -v error -show_entries format=duration -of csv=p=0 "$1"; }
rate_of() { soxi -r "$1" 2>/dev/null || ffprobe -v error -select_streams a:0 -show_entries stream=sample_rate -of csv=p=0 "$1"; }

# assert_audio FILE MIN_S MAX_S [RATE]
assert_audio() {
    local f="$1" min="$2" max="$3" rate="${4:-24000}" d r
    [[ -s "$f" ]] || fail "no audio at $f"
    d="$(duration_of "$f")"
    r="$(rate_of "$f")"
    awk -v d="$d" -v lo="$min" -v hi="$max" 'BEGIN { exit !(d >= lo && d <= hi) }' \
        || fail "$f lasts ${d}s, expected ${min}-${max}s"
    [[ "$r" == "$rate" ]] || fail "$f is ${r} Hz, expected ${rate} Hz"
    CHECKS=$((CHECKS + 1))
    note "ok: $(basename "$f") ${d}s ${r} Hz"
}

# assert_says FILE "expected text" [MAX_WER] — transcribes with faster-whisper (model from the cache).
assert_says() {
    local f="$1" text="$2" max="${3:-0.35}"
    "$PYTHON" "$REPO/tests/local/lib/transcript_check.py" "$f" "$text" "$max" || fail "$f does not say: $text"
    CHECKS=$((CHECKS + 1))
}

done_suite() { note "passed ($CHECKS checks)"; }
