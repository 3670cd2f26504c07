# saferisk: two commands on a fresh Debian 12 machine with Python 3.11.
#   make audit   installs what the audit needs and runs the default audit (snakemake)
#   make test    installs that plus the test tools and runs the test suite
# Both are idempotent: a second run only reruns what changed.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
APT_PACKAGES := python3-venv make git libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core
# the tests also render PDF pages (pdftoppm) and start a real single-node SLURM cluster
TEST_APT_PACKAGES := poppler-utils slurm-wlm munge
# Where pip gets torch: empty = pip's default index (PyPI: for Linux the CUDA build, which also
# runs on a CPU but brings the NVIDIA libraries). For a CPU-only machine:
#   make audit TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
TORCH_INDEX_URL ?=

.PHONY: audit test test-fast install install-test system-deps test-system-deps clean-results lint bench readme-pages

audit: install
	$(BIN)/snakemake

# pytest-xdist: one worker per CPU, each test file on one worker (module fixtures run once);
# most of the end-to-end tests' time is interpreter and snakemake start-up, which overlaps well.
test: install-test
	$(BIN)/python -m pytest -q -p no:cacheprovider -n auto --dist loadfile $(PYTEST_ARGS)

# While developing: every test but the end-to-end ones (tests/workflow/, @pytest.mark.slow).
test-fast: install-test
	$(BIN)/python -m pytest -q -p no:cacheprovider -n auto --dist loadfile -m "not slow" $(PYTEST_ARGS)

install: system-deps $(VENV)/.installed

# the audit's environment plus the test, SLURM and benchmark extras
install-test: install test-system-deps $(VENV)/.installed-test

system-deps:
	@bash .ci/system-deps.sh $(APT_PACKAGES)

test-system-deps:
	@bash .ci/system-deps.sh $(TEST_APT_PACKAGES)

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=23"
	$(BIN)/python -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(BIN)/python -m pip install -q -e .
	@touch $@

# torchattacks (MIT; the FAB reference of benchmarks/bench_witness.py) without its declared
# dependencies: torchvision, which cannot load beside the CPU torch wheel, and an old requests;
# the attacks import neither
TORCHATTACKS = torchattacks==3.5.1

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml Makefile
	$(BIN)/python -m pip install -q -e ".[test,slurm,bench]"
	$(BIN)/python -m pip install -q --no-deps $(TORCHATTACKS)
	@touch $@

lint: install-test
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile workflow/rules

bench: install-test
	$(BIN)/python -m benchmarks --threads 1

# Re-render the README's report pages from the default audit's PDFs.
readme-pages: audit
	$(BIN)/python docs/render_readme_pages.py

clean-results:
	rm -rf results logs
