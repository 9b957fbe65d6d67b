#!/usr/bin/env bash
# scripts/publish.sh [VARIANT...] [--allow-dirty] [--dry-run] [--no-cache]
# Builds and pushes the images to $PAB_REGISTRY/py-audio-box (e.g. PAB_REGISTRY=ghcr.io/you):
#   cpu        Dockerfile                          :latest        and :cpu-<sha>
#   cuda-base  Dockerfile.cuda-base (flash-attn)   :cuda-base     and :cuda-base-<sha>
#   cuda       Dockerfile.cuda on :cuda-base       :cuda          and :cuda-<sha>
#   cuda128    Dockerfile.cuda-base FLASH_ATTN=0   :cuda128-base, then Dockerfile.cuda on it :cuda128 (+ -<sha>)
#   all        every one of the above, in that order. Default: cpu cuda.
# Refuses a tree with uncommitted changes (the SHA tag must name what is inside) unless
# --allow-dirty, which pushes only the moving tags. Log in first, without the token on the
# command line:  echo "$TOKEN" | docker login ghcr.io -u USER --password-stdin
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

die() { echo "publish: $*" >&2; exit 2; }

allow_dirty=0
dry_run=0
no_cache=()
variants=()
for arg in "$@"; do
    case "$arg" in
        --allow-dirty) allow_dirty=1 ;;
        --dry-run) dry_run=1 ;;
        --no-cache) no_cache=(--no-cache) ;;
        cpu|cuda-base|cuda|cuda128) variants+=("$arg") ;;
        all) variants+=(cpu cuda-base cuda cuda128) ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) die "unknown argument '$arg' (variants: cpu cuda-base cuda cuda128 all)" ;;
    esac
done
[[ ${#variants[@]} -gt 0 ]] || variants=(cpu cuda)

[[ -n "${PAB_REGISTRY:-}" ]] || die "set PAB_REGISTRY, e.g. PAB_REGISTRY=ghcr.io/you"
image="${PAB_REGISTRY%/}/py-audio-box"
platform="${PAB_PLATFORM:-linux/amd64}"

git rev-parse --git-dir >/dev/null 2>&1 || die "not a git checkout"
sha="$(git rev-parse --short=12 HEAD)"
if [[ -n "$(git status --porcelain --untracked-files=normal)" ]]; then
    if [[ $allow_dirty != 1 ]]; then
        git status --short >&2
        die "the tree has uncommitted changes; commit them, or pass --allow-dirty (no SHA tag is pushed then)"
    fi
    echo "publish: --allow-dirty: pushing moving tags only (the tree is not commit $sha)" >&2
    sha=""
fi

run() {
    echo "+ $*"
    if [[ $dry_run != 1 ]]; then "$@"; fi
}

# build_push DOCKERFILE MOVING_TAG VARIANT [--build-arg ...]: pushes :MOVING_TAG and :VARIANT-<sha>
build_push() {
    local dockerfile="$1" tag="$2" variant="$3"
    shift 3
    local tags=(-t "$image:$tag")
    [[ -n "$sha" ]] && tags+=(-t "$image:$variant-$sha")
    run docker buildx build --platform "$platform" ${no_cache[@]+"${no_cache[@]}"} -f "$dockerfile" "${tags[@]}" \
        --label "org.opencontainers.image.revision=${sha:-dirty}" "$@" --push .
}

for variant in "${variants[@]}"; do
    case "$variant" in
        cpu) build_push Dockerfile latest cpu ;;
        cuda-base) build_push Dockerfile.cuda-base cuda-base cuda-base --build-arg FLASH_ATTN=1 ;;
        cuda) build_push Dockerfile.cuda cuda cuda --build-arg "BASE_IMAGE=$image:cuda-base" ;;
        cuda128)
            build_push Dockerfile.cuda-base cuda128-base cuda128-base --build-arg FLASH_ATTN=0
            build_push Dockerfile.cuda cuda128 cuda128 --build-arg "BASE_IMAGE=$image:cuda128-base"
            ;;
    esac
done
echo "publish: done (${variants[*]})"
