# py-audio-box — developer and CI entry points.  `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
PYTEST_ARGS ?=

.PHONY: help venv system-deps test

help: ## list targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sort

$(VENV)/.installed: pyproject.toml scripts/strip-torchaudio-ext.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e '.[test]'
	scripts/strip-torchaudio-ext.sh $(PY)
	touch $@

venv: $(VENV)/.installed ## create .venv and install the project (CPU torch first)

system-deps: ## install ffmpeg/sox/espeak-ng from the distribution (needs root)
	@if ! command -v ffmpeg >/dev/null || ! command -v espeak-ng >/dev/null || ! command -v sox >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg sox espeak-ng >/dev/null; \
	fi

test: venv ## offline test suite on tiny real checkpoints
	@command -v ffmpeg >/dev/null || { echo "ffmpeg is missing: run 'make system-deps' (or install ffmpeg)"; exit 1; }
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q $(PYTEST_ARGS)
