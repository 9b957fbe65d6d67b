# py-audio-box — developer and CI entry points.  `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
PYTEST_ARGS ?=

.PHONY: help venv system-deps test lint build build-gpu publish-cpu publish-cuda-base publish-cuda \
	publish-cuda128 test-local test-local-fast synth-test vast-search vast-shell vast-run vast-status vast-reap vast-destroy

help: ## list targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sort

$(VENV)/.installed: pyproject.toml scripts/strip-torchaudio-ext.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e '.[test,cloud]'
	scripts/strip-torchaudio-ext.sh $(PY)
	touch $@

venv: system-deps $(VENV)/.installed ## create .venv and install the project (CPU torch first)

system-deps: ## install ffmpeg/sox/espeak-ng/rsync, chromium (web-page test), python3-venv when missing (apt-get as root or via sudo)
	@scripts/system-deps.sh

test: system-deps venv lint ## system packages, .venv, lint, then the offline suite on tiny real checkpoints
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q $(PYTEST_ARGS)

# ---- lint: Dockerfiles, shell scripts, compose files (tools from the `lint` extra) ----------------
$(VENV)/.lint-installed: pyproject.toml | $(VENV)/.installed
	$(PY) -m pip install -q -e '.[lint]'
	scripts/strip-torchaudio-ext.sh $(PY)
	touch $@

lint: $(VENV)/.lint-installed ## ruff, hadolint, shellcheck, compose files against the Compose spec
	scripts/lint.sh $(PY)

# ---- Docker images -----------------------------------------------------------------------------
build: ## build the CPU image (docker compose)
	./run --build

build-gpu: ## build the CUDA images (cuda-base with flash-attn, then the app layer)
	TOOLBOX_VARIANT=gpu ./run --build

publish-cpu: ## push the CPU image, tagged latest and cpu-<git sha> (needs PAB_REGISTRY)
	scripts/publish.sh cpu $(PUBLISH_ARGS)

publish-cuda-base: ## push cuda-base (CUDA torch + flash-attn, SM 8.0-9.0)
	scripts/publish.sh cuda-base $(PUBLISH_ARGS)

publish-cuda: ## push the thin CUDA app image on top of cuda-base
	scripts/publish.sh cuda $(PUBLISH_ARGS)

publish-cuda128: ## push cuda128-base and cuda128 (no flash-attn; Blackwell and newer)
	scripts/publish.sh cuda128 $(PUBLISH_ARGS)

# ---- real-model suites (a machine with the weights; ONLY=, SKIP=, SKIP_SLOW=1, SKIP_DESIGN=1) -------
test-local: ## end-to-end suites with real models (tests/local)
	tests/local/run-all.sh

test-local-fast: ## the same without slow and voice-design suites
	SKIP_SLOW=1 SKIP_DESIGN=1 tests/local/run-all.sh

synth-test: ## quick real-model synthesis check (built-in speaker + a cloned voice)
	ONLY="$${ONLY:-02 03}" SKIP_SLOW=1 tests/local/run-all.sh

# ---- vast.ai (scripts/vast.sh; docs/docker-and-cloud.md) ------------------------------------------
$(VENV)/.cloud-installed: pyproject.toml | $(VENV)/.installed
	$(PY) -m pip install -q -e '.[cloud]'
	scripts/strip-torchaudio-ext.sh $(PY)
	touch $@

VAST_ARGS ?=

vast-search: $(VENV)/.cloud-installed ## offers by DLPerf per dollar (QUERY= overrides the default query)
	scripts/vast.sh search $(if $(QUERY),--query "$(QUERY)")

vast-shell: $(VENV)/.cloud-installed ## rent a GPU and open a shell; destroyed on exit unless VAST_ARGS=--keep
	scripts/vast.sh shell $(VAST_ARGS)

vast-run: $(VENV)/.cloud-installed ## TASKS=file or ARGS='-- app ...' [SHARDS=K]: run on GPUs, pull /work, destroy
	scripts/vast.sh run $(VAST_ARGS) $(if $(SHARDS),--shards $(SHARDS)) $(if $(TASKS),--tasks "$(TASKS)") $(ARGS)

vast-status: $(VENV)/.cloud-installed ## this tool's instances, and which are orphans
	scripts/vast.sh status

vast-reap: $(VENV)/.cloud-installed ## destroy every instance of this tool no live run owns (VAST_ARGS=--dry-run)
	scripts/vast.sh reap $(VAST_ARGS)

vast-destroy: $(VENV)/.cloud-installed ## destroy instance ID=
	@test -n "$(ID)" || { echo "usage: make vast-destroy ID=<instance id>"; exit 2; }
	scripts/vast.sh destroy $(ID)
