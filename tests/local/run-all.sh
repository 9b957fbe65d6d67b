#!/usr/bin/env bash
# tests/local/run-all.sh: end-to-end suites with REAL models, for a machine that has the weights
# (or may download them). Not part of `make test`.
#   ONLY="02 04"      run only these suites (number or name)
#   SKIP="06"         skip these
#   SKIP_SLOW=1       skip suites marked '# slow'
#   SKIP_DESIGN=1     skip the voice-design suite (1.7B VoiceDesign)
#   RUNNER=./run      through Docker instead of ./run-direct
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

matches() {  # matches SUITE "LIST"
    local suite="$1" item
    for item in $2; do
        [[ "$suite" == "$item"* || "$suite" == *"$item"* ]] && return 0
    done
    return 1
}

passed=0 failed=0 skipped=0
failed_names=()
for script in "$here"/[0-9][0-9]-*.sh; do
    name="$(basename "${script%.sh}")"
    if [[ -n "${ONLY:-}" ]] && ! matches "$name" "$ONLY"; then continue; fi
    if [[ -n "${SKIP:-}" ]] && matches "$name" "$SKIP"; then
        echo "== $name: skipped (SKIP)"; skipped=$((skipped + 1)); continue
    fi
    if [[ "${SKIP_SLOW:-0}" == 1 ]] && grep -q '^# slow' "$script"; then
        echo "== $name: skipped (SKIP_SLOW)"; skipped=$((skipped + 1)); continue
    fi
    if [[ "${SKIP_DESIGN:-0}" == 1 && "$name" == *design* ]]; then
        echo "== $name: skipped (SKIP_DESIGN)"; skipped=$((skipped + 1)); continue
    fi
    echo "== $name"
    started=$SECONDS
    if bash "$script"; then
        passed=$((passed + 1)); echo "== $name: passed in $((SECONDS - started))s"
    else
        failed=$((failed + 1)); failed_names+=("$name"); echo "== $name: FAILED after $((SECONDS - started))s"
    fi
done
echo "local suites: $passed passed, $failed failed, $skipped skipped${failed_names[*]:+ (failed: ${failed_names[*]})}"
[[ $failed -eq 0 ]]
