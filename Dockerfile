# syntax=docker/dockerfile:1.7
# CPU image: every app, no GPU. Installs the project exactly like the native path (see Makefile
# `venv`): torch first, on its own and pinned, then the project through pyproject.toml, then the
# torchaudio extension strip. One list of dependencies for both paths.
FROM python:3.11-slim-bookworm

ARG TORCH_VERSION=2.13.0
# The CPU wheel index keeps the multi-GiB CUDA build of torch out of the CPU image.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Hash of the files that decide the installed dependencies; ./run compares it to rebuild when they change.
ARG DEPS_HASH=unknown

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Audio tools from the distribution; tini reaps children and forwards signals; rsync/ssh clients
# for the vast.ai workflow when this image is used as a remote runner.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ffmpeg sox espeak-ng tini ca-certificates git rsync openssh-client \
 && rm -rf /var/lib/apt/lists/*

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

WORKDIR /app
# Dependency layer first: it depends on pyproject.toml only, so a code change does not reinstall
# every dependency. An empty package stands in for the code; the real code is installed below
# with --no-deps. The `qa` extra brings Resemblyzer (voice-split's speaker step and the take checks);
# its webrtcvad dependency is an sdist, so a compiler is present for that install only.
COPY pyproject.toml README.md* ./
COPY scripts/strip-torchaudio-ext.sh scripts/strip-torchaudio-ext.sh
RUN mkdir -p lib/audiobox && touch lib/audiobox/__init__.py \
 && { [ -f README.md ] || : > README.md; } \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev \
 && pip install "/app[qa]" \
 && apt-get purge -y --auto-remove gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/* \
 && scripts/strip-torchaudio-ext.sh python
COPY . .
RUN pip install --no-deps --force-reinstall . \
 && chmod 0755 run-direct \
 && mkdir -p /cache /work /tmp/home \
 && chmod 1777 /cache /work /tmp/home

LABEL org.opencontainers.image.title="py-audio-box" \
      org.opencontainers.image.description="Voice split, clone and synthesis toolbox (CPU)" \
      org.py-audio-box.deps-hash="${DEPS_HASH}"

# Caches live on the /cache mount so models download once; outputs go to /work.
# HOME points somewhere writable because compose runs the container as the host user.
ENV AUDIOBOX_CACHE=/cache \
    AUDIOBOX_WORK=/work \
    XDG_CACHE_HOME=/cache \
    HF_HOME=/cache/huggingface \
    TORCH_HOME=/cache/torch \
    HF_HUB_DISABLE_XET_TRANSPORT=1 \
    HOME=/tmp/home

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["bash"]
