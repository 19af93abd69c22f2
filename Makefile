# Two commands on a fresh machine: `make run` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
DATA ?= data
CONFIG ?= deploy/demo.toml
# PORT and HOST count only when given on make's command line: many shells export a HOST.
given = $(if $(filter command line,$(origin $(1))),$(2) $($(1)))
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test install install-dev system-deps node-deps lint bench clean client-exe

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[server]'
	touch $@

$(BIN)/.installed-dev: $(BIN)/.installed pyproject.toml
	$(BIN)/pip install --quiet -e '.[server,dev]'
	touch $@

install: $(BIN)/.installed

install-dev: $(BIN)/.installed-dev system-deps

# Debian packages the tests use: ffmpeg/ffprobe (media fixtures, transcoding), b3sum (receipts
# checked with an independent tool), chromium (the viewer and upload page in a real browser),
# nginx (the documented reverse proxy), sqlite3 and pg_dump (backup and restore tests),
# softhsm2 (a real PKCS#11 token for the HSM signing tests), fontconfig and a CJK font (zh pages
# in screenshots).
# Installed only when missing.
SYSTEM_TOOLS := ffmpeg:ffmpeg ffprobe:ffmpeg b3sum:b3sum chromium:chromium nginx:nginx-light \
	sqlite3:sqlite3 pg_dump:postgresql-client softhsm2-util:softhsm2 fc-list:fontconfig
# Fonts by the language they must cover (fc-list :lang=LANG), so Chinese pages render in the
# screenshot tests instead of boxes.
SYSTEM_FONTS := zh:fonts-noto-cjk
system-deps:
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
		command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair##*:}"; done; \
	for pair in $(SYSTEM_FONTS); do \
		fc-list :lang=$${pair%%:*} family 2>/dev/null | grep -q . || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi

# @tus/server (Node) as a peer tus server for the interop tests and the benchmarks, pinned by
# tests/node/package-lock.json. Without npm the interop tests skip (and fail under CI=true).
NODE_DIR := tests/node
node-deps: $(NODE_DIR)/node_modules/.installed

$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package-lock.json
	@if command -v npm >/dev/null; then \
		cd $(NODE_DIR) && npm ci --no-audit --no-fund --silent && touch node_modules/.installed; \
	else echo "npm is missing: the @tus/server interop tests will be skipped"; fi

## Start the server on the embedded default (local folder + SQLite in ./data): it prints an
## uploader token, the upload endpoint and a ticket link to watch a demo recording.
## `make run PORT=9090 HOST=0.0.0.0 DATA=/srv/avidence CONFIG=my.toml` changes any of them.
run: install
	$(BIN)/avidence-server serve --config $(CONFIG) --data-dir $(DATA) \
		$(call given,PORT,--port) $(call given,HOST,--host) --demo

## Lint, type-check, then run the whole test suite (SeaweedFS, PostgreSQL, ffmpeg, Chromium are real).
test: lint node-deps
	$(BIN)/pytest

# mypy needs the installed package names (avidence.server ...): type-check through a link tree.
## Benchmarks (minutes; print ratios against the peers measured in the same run).
bench: install-dev node-deps
	$(BIN)/python bench/upload.py
	$(BIN)/python bench/client.py
	$(BIN)/python bench/stream.py
	$(BIN)/python bench/transcode.py

## The client alone as one executable file, dist/avidence, for recorder PCs without Python:
## built by PyInstaller in a fresh client-only virtualenv, so nothing of the server is inside
## (about a minute here; tests/test_client_lean.py builds and runs it). It carries the `gm` extra
## so it checks SM2-signed receipts of a `suite = "gm"` server too.
CLIENT_VENV := build/client-venv
client-exe: dist/avidence

dist/avidence: pyproject.toml avidence/__init__.py client/*.py storage/digests.py
	rm -rf $(CLIENT_VENV) build/pyinstaller
	$(PYTHON) -m venv $(CLIENT_VENV)
	$(CLIENT_VENV)/bin/pip install --quiet '.[client-exe,gm]'
	# The entry script lives outside the source tree (next to it, the tree's own avidence/
	# folder, without the client, would hide the installed package) and is not avidence.py.
	mkdir -p build/pyinstaller
	printf 'from avidence.client.cli import main\n\nmain()\n' > build/pyinstaller/client_main.py
	cd build/pyinstaller && ../client-venv/bin/pyinstaller --onefile --name avidence --clean \
		--noconfirm --log-level WARN --distpath ../../dist --workpath work client_main.py

lint: install-dev
	$(BIN)/ruff check server client storage transcode tests bench
	rm -rf build/typecheck && mkdir -p build/typecheck/avidence
	cp avidence/__init__.py avidence/py.typed build/typecheck/avidence/
	for d in server client storage transcode; do ln -s ../../../$$d build/typecheck/avidence/$$d; done
	cd build/typecheck && ../../$(BIN)/mypy -p avidence

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
