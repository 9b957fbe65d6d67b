#!/usr/bin/env bash
# list-voices and capabilities answer in JSON without loading a model.
# shellcheck source=lib/common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib/common.sh"

app voice-synth list-voices --json > "$HOST_OUT/voices.json"
"$PYTHON" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert isinstance(d,(list,dict)), d' "$HOST_OUT/voices.json" \
    || fail "list-voices --json is not JSON"
CHECKS=$((CHECKS + 1))
app voice-synth capabilities --json > "$HOST_OUT/capabilities.json"
"$PYTHON" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert isinstance(d,dict) and d, d' "$HOST_OUT/capabilities.json" \
    || fail "capabilities --json is not a JSON object"
CHECKS=$((CHECKS + 1))
done_suite
