# The two set-up commands (see README): `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dermai

.PHONY: help run test test-all lint lint-imports format typecheck check-data browser-deps web-deps site clean-venv plots-vendor docs-vendor exp

.DEFAULT_GOAL := help

## help: list the targets and what they do (every line of each description)
help:
	@awk '/^## [a-z][a-z-]*: /{sub(/^## /, ""); i = index($$0, ": "); printf "  %-12s %s\n", substr($$0, 1, i - 1), substr($$0, i + 2); more = 1; next} \
	  more && /^## /{sub(/^## /, ""); printf "  %-12s %s\n", "", $$0; next} {more = 0}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "need Python >= 3.11"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

## run: create .venv if missing, install, and run the whole pipeline on the embedded sample;
## says in one line when this machine's outputs differ from the committed dvc.lock
run: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro
	@if git rev-parse -q --verify HEAD >/dev/null 2>&1 && ! git diff --quiet HEAD -- dvc.lock; then \
	  echo "make run: dvc.lock differs from the commit: this machine built some outputs with other bytes (another CPU or thread count sums floats in another order; README: Byte-identical reruns), so commit them as your baseline before comparing experiments: git add -A && git commit -m 'baseline: this machine'"; fi

## exp: the experiments' changed params and headline metrics, without the dependency-hash
## and date columns of `dvc exp show --only-changed` (fits 120 columns)
EXP_SHOW := exp show --only-changed --drop '.*/.*|Created' --no-pager
exp: $(STAMP)
	@PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc $(EXP_SHOW)

## browser-deps: Debian's Chromium for the browser tests (apt, as root only)
# Playwright drives it; `playwright install` is never used. Not root: the browser tests skip
# and say why.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
	  [ "$$(id -u)" != 0 ] || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

## web-deps: LiteRT.js for the on-device web app, at the versions locked in
## web-ondevice/package-lock.json (`npm ci`; never fetched at page load). Skipped, with a
## message, when npm is missing (the on-device browser tests then skip and say why).
WEB_STAMP := web-ondevice/node_modules/.installed-dermai
$(WEB_STAMP): web-ondevice/package.json web-ondevice/package-lock.json
	cd web-ondevice && npm ci --no-audit --no-fund --ignore-scripts
	@touch $(WEB_STAMP)

web-deps:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory $(WEB_STAMP); \
	  else echo "web-deps: npm not found; the on-device web app cannot be built"; fi

## site: the static on-device web app of the exported int8 model in site/ (after `make run`).
## The kind of training images comes from the model's metadata; IMAGE_KIND="..." overrides it.
IMAGE_KIND ?=
site: $(STAMP) web-deps
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dermai export-web --model models/model_int8.tflite \
	  --out site/ $(if $(IMAGE_KIND),--image-kind "$(IMAGE_KIND)")

## test: the default test suite (slow real-data tests excluded) on 2 xdist workers; serial: PYTEST_ARGS=
# loadgroup + the groups set in tests/conftest.py: each expensive shared fixture is built by one
# worker only; --no-loadscope-reorder keeps the conftest's longest-first order of the work.
PYTEST_ARGS ?= -n 2 --dist loadgroup --no-loadscope-reorder
test: $(STAMP) browser-deps web-deps
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

## test-all: include the slow real-data tests (needs ../shared/data/ham10000)
test-all: $(STAMP) browser-deps web-deps
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -m ""

## lint: ruff check, ruff format --check and the layer rules (import-linter, pyproject.toml)
lint: $(STAMP) lint-imports
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

## format: rewrite the tree with ruff format (and ruff's import sorting)
format: $(STAMP)
	$(BIN)/ruff check --select I --fix src tests bench
	$(BIN)/ruff format src tests bench

## typecheck: mypy on src/ (settings in pyproject.toml)
typecheck: $(STAMP)
	$(BIN)/mypy

## lint-imports: the layer rules: core pure, models/runtime/web never import stages or commands,
## stages never import each other
lint-imports: $(STAMP)
	$(BIN)/lint-imports --no-cache

## check-data: the data-validation gates on the embedded sample (CI runs this after the tests)
check-data: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro validate

clean-venv:
	rm -rf $(VENV)

## plots-vendor: re-vendor Vega/Vega-Lite/Vega-Embed (npm) into the offline plots page
## .dvc/plots/page.html (change the pinned versions here; licences stay in .dvc/plots/vendor/)
VEGA_PKGS := vega@5.33.1 vega-lite@5.23.0 vega-embed@6.29.0
plots-vendor:
	@tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent $(VEGA_PKGS) >/dev/null && \
	  for f in *.tgz; do d=$${f%-*}; mkdir $$d && tar xzf $$f -C $$d; done && cd - >/dev/null && \
	  $(PYTHON) .dvc/plots/make_page.py $$tmp && rm -rf $$tmp

## docs-vendor: re-vendor the GX Data Docs' CDN files (Bootstrap, jQuery, Font Awesome, ...; npm)
## into src/dermai/validation/docs_vendor/ (versions and files in its manifest.json; licences kept)
docs-vendor:
	@tmp=$$(mktemp -d) && cd $$tmp && \
	  for pkg in $$($(PYTHON) -c 'import json,sys; m=json.load(open(sys.argv[1])); print(" ".join(f"{k}@{v}" for k,v in m["packages"].items()))' $(CURDIR)/src/dermai/validation/docs_vendor/manifest.json); do \
	    f=$$(npm pack --silent $$pkg) && name=$${pkg%@*} && mkdir -p "$$name" && tar xzf $$f -C "$$name"; done && \
	  cd - >/dev/null && $(PYTHON) src/dermai/validation/docs_vendor/vendor.py $$tmp && rm -rf $$tmp
