#!/usr/bin/env bash
# voice-synth batch renders several items in one process; every item comes out and says its text.
# shellcheck source=lib/common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib/common.sh"

cat > "$HOST_OUT/script.jsonl" <<'JSONL'
{"speaker": "Ryan", "language": "English", "text": "First item of the batch script.", "output": "one"}
{"speaker": "Ryan", "language": "English", "text": "Second item, read in the same process.", "output": "two"}
JSONL
app voice-synth batch "$APP_OUT/script.jsonl" --out-exact "$APP_OUT/batch" --seed 4
for name in one two; do
    wav="$(find "$HOST_OUT/batch" -name "$name*.wav" | sort | head -n1)"
    [[ -n "$wav" ]] || fail "batch item '$name' has no wav under $HOST_OUT/batch"
    assert_audio "$wav" 1 10
done
assert_says "$(find "$HOST_OUT/batch" -name 'two*.wav' | sort | head -n1)" "Second item, read in the same process."
done_suite
