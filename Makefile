# The virtualenv is created on first use, so a fresh clone needs only
# `make demo` or `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast bench lint audit clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "cutover needs Python 3.11 or newer; set PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,load,dev,parquet]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/cutover demo

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m 'not slow'

bench: $(STAMP)
	$(BIN)/python bench/proxy_overhead.py

lint: $(STAMP)
	$(BIN)/ruff check cutover shadow replay compare loadtest sandbox tests bench

# pip-audit checks every package installed in $(VENV) against PyPI's
# vulnerability data; cutover itself, installed editable, is skipped.
# --strict fails when a package could not be audited at all; CI
# (.ci/run) clears AUDIT_STRICT and reads the JSON report instead.
AUDIT_STRICT ?= --strict
AUDIT_OUTPUT ?=
# Advisories that no installable release fixes on Python 3.11: mitmproxy
# 11.0.2, the newest mitmproxy for 3.11, pins h11<=0.14.0, h2<=4.1.0,
# flask<=3.1.0, tornado<=6.4.2 and cryptography<44.1. On 3.12 and newer,
# mitmproxy 12 allows the fixed versions, so they are not ignored there.
# h11 chunked-body parsing (fixed in 0.16.0), h2 request splitting (4.3.0),
# tornado multipart logging DoS (6.5.0), flask SECRET_KEY_FALLBACKS order
# (3.1.1), cryptography input validation (46.0.5).
AUDIT_IGNORE_PY311 := --ignore-vuln GHSA-vqfr-h8mv-ghfj --ignore-vuln CVE-2025-57804 \
	--ignore-vuln GHSA-7cx3-6m66-7c5m --ignore-vuln GHSA-4grg-w6v8-c28g --ignore-vuln CVE-2026-26007

audit: $(STAMP)
	ignores=$$($(BIN)/python -c 'import sys; print("$(AUDIT_IGNORE_PY311)" if sys.version_info < (3, 12) else "")'); \
	$(BIN)/pip-audit --local --skip-editable --progress-spinner off $(AUDIT_STRICT) $(AUDIT_OUTPUT) $$ignores

clean:
	rm -rf $(VENV) *.egg-info
