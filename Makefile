# The two commands of the README: `make book` and `make test`. Both create .venv on a
# fresh machine (only python3 and pip needed) and install the project into it.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Book parameters: the default runs every notebook on the miniature world.
PARAMS ?= notebooks/params/default.yaml
OUT    ?= book/generated
# Notebook kernels run side by side after the world's pretraining (lanes in the params file).
JOBS   ?= 2

# Root installs system packages directly; others go through sudo.
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: book test venv notebooks html clean clean-book chromium

# torch and torchvision are resolved together from the registry (never pin torch alone:
# a CPU-only torch wheel that pip may find locally has no matching torchvision). The last
# line proves the result imports.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[book,test]'
	$(BIN)/python -m gla.install_check
	@touch $(STAMP)

venv: $(STAMP)

# The book tests open the built pages in headless Chromium (Debian's package).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for the browser tests"; \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }

test: $(STAMP) chromium
	$(BIN)/python -m pytest

notebooks: $(STAMP)
	$(BIN)/python -m gla book run --params $(PARAMS) --out $(OUT) --jobs $(JOBS)

html: $(STAMP)
	$(BIN)/jupyter-book build book/ -W --keep-going

book: notebooks html
	@echo "Book built: _build/html/index.html"

clean-book:
	rm -rf book/_build book/generated

clean: clean-book
	rm -rf $(VENV)
