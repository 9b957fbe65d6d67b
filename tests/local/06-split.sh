#!/usr/bin/env bash
# slow
# voice-split on a recording made here (two speaker takes with music-free gaps and noise):
# Demucs + VAD give clips of speech that last what was asked.
# shellcheck source=lib/common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib/common.sh"

for i in 1 2; do
    app voice-synth speak --speaker Ryan --language English --seed "$i" \
        --text "This is part $i of a recording that voice split should cut into clean clips of speech." \
        --out-exact "$APP_OUT/src$i" --json-result "$APP_OUT/src$i.json"
done
a="$(host_path "$(result_file "$HOST_OUT/src1.json")")"
b="$(host_path "$(result_file "$HOST_OUT/src2.json")")"
sox "$a" "$b" "$HOST_OUT/recording.wav" pad 0.5 0.5
assert_audio "$HOST_OUT/recording.wav" 5 40
app voice-split --audio "$APP_OUT/recording.wav" --clips 1 --length 4 --out "$APP_OUT/split"
clip="$(find "$HOST_OUT/split" -name '*.wav' -size +1k | sort | head -n1)"
[[ -n "$clip" ]] || fail "voice-split wrote no clip under $HOST_OUT/split"
d="$(duration_of "$clip")"
awk -v d="$d" 'BEGIN { exit !(d >= 1.5 && d <= 8) }' || fail "clip lasts ${d}s, expected about 4s"
CHECKS=$((CHECKS + 1))
done_suite
