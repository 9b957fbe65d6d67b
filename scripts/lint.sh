#!/usr/bin/env bash
# Lints what the Python tests cannot: Python style and static errors (ruff), the Dockerfiles
# (hadolint), every shell script (shellcheck) and the compose files (JSON schema of the Compose
# specification, then `docker-compose config`
# with the real Compose v2 binary, which also checks interpolation and the GPU overlay merge).
# Tools come from the `lint` extra (make lint installs it). Usage: scripts/lint.sh [PYTHON]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python_bin="${1:-.venv/bin/python}"
bin_dir="$(dirname "$python_bin")"
status=0

echo "lint: ruff check and ruff format --check (settings in pyproject.toml)"
"$bin_dir/ruff" check --quiet . || status=1
"$bin_dir/ruff" format --check --quiet . || status=1

echo "lint: hadolint"
"$bin_dir/hadolint" Dockerfile Dockerfile.cuda-base Dockerfile.cuda || status=1

echo "lint: shellcheck"
mapfile -t shell_scripts < <(
    {
        printf '%s\n' run run-direct
        find scripts tests -type f -name '*.sh' -not -path '*/.venv/*'
    } | sort -u
)
"$bin_dir/shellcheck" -x "${shell_scripts[@]}" || status=1

echo "lint: compose files against the Compose specification schema"
"$bin_dir/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml docker-compose.gpu.yml || status=1

echo "lint: docker-compose config (CPU, and with the GPU overlay)"
compose_bin="$("$python_bin" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')"
for files in "-f docker-compose.yml" "-f docker-compose.yml -f docker-compose.gpu.yml"; do
    # shellcheck disable=SC2086  # the file options are meant to split
    if ! "$compose_bin" $files config -q; then
        echo "lint: docker-compose $files config failed" >&2
        status=1
    fi
done

if [[ $status -eq 0 ]]; then echo "lint: all clean"; fi
exit "$status"
