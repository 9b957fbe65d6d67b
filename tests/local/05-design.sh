#!/usr/bin/env bash
# design: a voice described in words (1.7B VoiceDesign), then used by name. Skipped with SKIP_DESIGN=1.
# shellcheck source=lib/common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib/common.sh"
voice="local-test-designed"

app voice-synth design-voice --voice-name "$voice" --force --language English \
    --instruct "A calm middle-aged female narrator with a warm, low voice." \
    --ref-text "Once upon a time, in a quiet village by the sea, there lived an old lighthouse keeper."
text="The lighthouse keeper climbed the stairs every evening."
app voice-synth speak --voice "$voice" --language English --text "$text" \
    --out "$APP_OUT" --json-result "$APP_OUT/speak.json" --seed 5
wav="$(host_path "$(result_file "$HOST_OUT/speak.json")")"
assert_audio "$wav" 2 10
assert_says "$wav" "$text"
"$RUNNER" voice-synth delete-voice "$voice" --yes >/dev/null 2>&1 || true
done_suite
