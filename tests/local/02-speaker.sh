#!/usr/bin/env bash
# A built-in CustomVoice speaker says what it is asked to, at 24 kHz, for a plausible duration.
# shellcheck source=lib/common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib/common.sh"

text="The quick brown fox jumps over the lazy dog near the river bank."
app voice-synth speak --speaker Ryan --language English --text "$text" \
    --out "$APP_OUT" --json-result "$APP_OUT/result.json" --seed 1
wav="$(host_path "$(result_file "$HOST_OUT/result.json")")"
assert_audio "$wav" 2 12
assert_says "$wav" "$text"
done_suite
