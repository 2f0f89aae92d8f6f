# Two commands do all set-up on a fresh clone:
#   make run    installs the app's requirements into .venv and starts it on http://127.0.0.1:7860
#   make test   installs the test tools (and Debian's chromium if missing) and runs every test
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet -c constraints.txt  # constraints.txt pins the local torch (CPU wheel)

.PHONY: run test venv dev-deps browser lint bench clean screenshots

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip

venv: $(PY)
	$(PIP) -r requirements.txt

dev-deps: $(PY)
	$(PIP) -r requirements-dev.txt

browser:  # Debian's chromium for the browser tests, and fonts so emoji and CJK render in the screenshots
	@(command -v chromium && dpkg -s fonts-noto-color-emoji fonts-wqy-microhei) >/dev/null 2>&1 || \
	  (apt-get update -qq && apt-get install -y -qq chromium fonts-dejavu-core fonts-noto-color-emoji fonts-wqy-microhei >/dev/null)

run: venv
	PLAYGROUND_ALLOW_LOCAL_PATHS=1 $(PY) app.py

test: dev-deps browser
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=25  # two workers, one per core; each starts its own app server

lint: dev-deps
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: venv
	$(PY) -m playground bench --device cpu --quick

clean:
	rm -rf .pytest_cache .ruff_cache test-artifacts

screenshots: dev-deps browser  # rewrite the README images in docs/screenshots/ from the browser tests
	PLAYGROUND_SCREENSHOTS=docs $(PY) -m pytest -q tests/browser/test_screenshots.py
