# syncopt: `make quickstart` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= all
PYTEST_ARGS ?=

.PHONY: setup quickstart test test-slow fuzz tts clean

# Idempotent: reinstalls only when the project's dependency files change.
setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch==2.13.0 first and explicitly: the CPU wheel (never a CUDA build).
	$(PY) -m pip install --quiet -c constraints.txt torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

quickstart: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/quickstart.sh

# The suite without the tests marked slow (under 15 minutes on 2 idle cores); CI runs test-slow too.
test: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# The slow tests alone: real-clip sync, long exports, training and signal tests.
test-slow: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -m slow $(PYTEST_ARGS)

# The fuzz properties of tests/test_reliability.py with many more cases (FUZZ_EXAMPLES each); writes
# benchmarks/results/fuzz.json.
FUZZ_EXAMPLES ?= 10000
fuzz: setup
	cd benchmarks && ../$(PY) fuzz.py --examples $(FUZZ_EXAMPLES)

# Text-to-speech for the TTS training domain (syncopt.data.tts; `syncopt train --data tts:N`): Debian
# packages, installed only where training data is generated (tests that need them skip without them).
TTS_PACKAGES := festival festvox-us-slt-hts festvox-kallpc16k flite espeak-ng
tts:
	@missing=$$(for p in $(TTS_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache runs/quickstart
