#!/usr/bin/env bash
# A voice made here from scratch: a reference spoken by a built-in speaker is cloned with
# voice-clone, then the new voice speaks new text through voice-synth.
# shellcheck source=lib/common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib/common.sh"
voice="local-test-clone"

ref_text="Good evening. This recording will become the reference for a brand new voice."
app voice-synth speak --speaker Aiden --language English --text "$ref_text" \
    --out-exact "$APP_OUT/ref" --json-result "$APP_OUT/ref.json" --seed 2
ref="$(result_file "$HOST_OUT/ref.json")"
assert_audio "$(host_path "$ref")" 2 15

app voice-clone synth --ref-audio "$ref" --ref-text "$ref_text" --voice-name "$voice" \
    --text "A first sentence in the cloned voice." --out "$APP_OUT"

text="Cloned voices should read any sentence clearly and at a natural pace."
app voice-synth speak --voice "$voice" --language English --text "$text" \
    --out "$APP_OUT" --json-result "$APP_OUT/speak.json" --seed 3
wav="$(host_path "$(result_file "$HOST_OUT/speak.json")")"
assert_audio "$wav" 2 12
assert_says "$wav" "$text"
"$RUNNER" voice-synth delete-voice "$voice" --yes >/dev/null 2>&1 || "$RUNNER" voice-synth delete-voice "$voice" >/dev/null 2>&1 || true
done_suite
