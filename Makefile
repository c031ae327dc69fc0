# The two commands a fresh clone needs: `make demo` and `make test`.
# Each creates .venv and installs the project into it when missing.
#
# The interpreter: PYTHON if given (make test PYTHON=/usr/bin/python3.12), else the first of
# python3.11 (what the production image runs), python3.12, python3.13 and python3 that starts and
# is at least 3.11. Installation is constrained to requirements.lock, so the tests run the same
# third-party versions as the image.
PYTHON_CANDIDATES := python3.11 python3.12 python3.13 python3
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell for p in $(PYTHON_CANDIDATES); do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { command -v $$p; break; }; done)
endif
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# requirements.lock without its hashes: pip takes hashes in a constraints file as hash-checking mode.
CONSTRAINTS := $(VENV)/constraints.txt
# Development extras: the embedded broker (demo, tests) and the test tools. The image has neither.
EXTRAS := test,embedded

.PHONY: demo test bench venv clean browser tools lock go

$(STAMP): pyproject.toml requirements.lock
	@test -n "$(PYTHON)" || { echo "error: no Python >= 3.11 found (tried $(PYTHON_CANDIDATES)); install one, or name it: make PYTHON=/path/to/python3" >&2; exit 2; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 || { echo "error: PYTHON=$(PYTHON) is not a Python >= 3.11 that starts" >&2; exit 2; }
	@if test -x $(BIN)/python; then echo "using $(VENV) ($$($(BIN)/python -V))"; \
	else echo "creating $(VENV) with $(PYTHON) ($$($(PYTHON) -V))"; $(PYTHON) -m venv $(VENV); fi
	$(BIN)/python -m pip install --quiet --upgrade pip
	sed -e 's/ *\\$$//' -e '/^ *--hash=/d' requirements.lock > $(CONSTRAINTS)
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[$(EXTRAS)]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/xledger demo

# Debian's Chromium and axe-core for the review app's browser tests (tests/review/test_browser.py):
# chromium with its Danish texts (chromium-l10n) and node/npm where missing, from apt as root; axe-core from the npm registry at the version
# tests/review/js/package-lock.json pins, into tests/review/js/node_modules (not committed). The browser
# tests skip only when chromium or node is missing.
browser:
	@{ command -v chromium && [ -e /usr/lib/chromium/locales/da.pak ]; } >/dev/null 2>&1 \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && apt-get install -y -qq chromium chromium-l10n) >/dev/null 2>&1; } \
	  || echo "chromium could not be installed: the browser tests will be skipped"
	@command -v npm >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && apt-get install -y -qq nodejs npm) >/dev/null 2>&1; } \
	  || echo "node/npm could not be installed: the browser tests will be skipped"
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix tests/review/js --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null \
	  || { echo "error: npm ci in tests/review/js failed (axe-core for the browser tests)" >&2; exit 1; }; fi

tools:
	@{ command -v docker-compose && command -v shellcheck; } >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && apt-get install -y -qq docker-compose shellcheck) >/dev/null 2>&1; } \
	  || echo "docker-compose or shellcheck could not be installed: their deployment checks will be skipped"

# Debian's Go and golang.org/x/mod for the cross-check of checkpoints and proofs (tests/witness/test_go_crosscheck.py),
# built offline in GOPATH mode against /usr/share/gocode.
go:
	@{ command -v go >/dev/null 2>&1 && [ -d /usr/share/gocode/src/golang.org/x/mod/sumdb/note ]; } \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && apt-get install -y -qq golang-go golang-golang-x-mod-dev) >/dev/null 2>&1; } \
	  || echo "golang-go / golang-golang-x-mod-dev could not be installed: the Go cross-check will be skipped"

test: $(STAMP) browser tools go
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[$(EXTRAS),bench]'
	$(BIN)/python -m bench $(if $(FULL),--full,)

# Regenerates requirements.lock for the image: Linux x86_64, CPython 3.11. Run it there after
# changing a dependency in pyproject.toml; tests/test_lock.py fails until the lock matches.
LOCK_PYTHON ?= python3.11
lock:
	$(LOCK_PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/python -m pip install --quiet pip-tools
	$(VENV)-lock/bin/pip-compile --quiet --generate-hashes --allow-unsafe --all-build-deps --strip-extras \
	  --no-emit-index-url --no-emit-find-links --output-file requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) $(VENV)-lock var/*.sqlite* .pytest_cache
