# The two commands of the README: `make demo` and `make test`. Each sets up what it needs.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)

.PHONY: demo serve test lint typecheck pytest bench bench-fanout bench-call clean messages

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

# 10,000 phones, then 10,000 congestion-page watchers, on SSE, with one and two web processes.
bench-fanout: $(STAMP)
	$(PY) bench/fanout.py

# 20 video calls between the kiosk and a specialist, both in Chromium: accept → first frame.
bench-call: $(STAMP)
	$(PY) bench/call_setup.py

# Extract every message of the residents' and kiosks' pages (babel.cfg says which files) into
# web/locales/messages.pot, and bring each language's catalogue up to date with it; then
# translate what is new or marked fuzzy (tests/test_i18n.py fails until every one is).
LOCALES := web/locales
# our code:Babel locale of each catalogue
CATALOGUES := ja:ja ja-easy:ja en:en zh-Hans:zh_Hans ko:ko vi:vi

messages: $(STAMP)
	$(VENV)/bin/pybabel extract -F babel.cfg -c TRANSLATORS: --add-location=file --sort-by-file \
		--project=Madoguchi --copyright-holder="Madoguchi" -o $(LOCALES)/messages.pot .
	for pair in $(CATALOGUES); do \
		code=$${pair%%:*}; locale=$${pair#*:}; \
		$(VENV)/bin/pybabel update --init-missing --ignore-obsolete \
			-i $(LOCALES)/messages.pot -l $$locale \
			-o $(LOCALES)/$$code/LC_MESSAGES/messages.po || exit 1; \
	done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
