# The two commands of the README: `make demo` and `make test`. Each sets up what it needs.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)

.PHONY: demo serve test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(VENV)/bin/madoguchi demo

serve: $(STAMP)
	$(VENV)/bin/madoguchi serve

test: lint typecheck pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy must see the repository root under the package's own name, whatever the
# checkout's folder is called: a symlink gives it one.
typecheck: $(STAMP)
	mkdir -p $(VENV)/typecheck
	ln -sfn "$(CURDIR)" $(VENV)/typecheck/madoguchi
	cd $(VENV)/typecheck && MYPYPATH=. "$(CURDIR)/$(VENV)/bin/mypy" \
		--config-file "$(CURDIR)/pyproject.toml" -p madoguchi

pytest: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/queue_ops.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
