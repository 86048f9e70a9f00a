# plmdepth: `make book` builds the HTML book, `make test` runs the tests.
# Both create or update the virtual environment .venv from the pinned requirements first.

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: book test chapter models clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

book: $(STAMP)
	$(PY) -m plmdepth book

test: $(STAMP)
	bash scripts/install_browser.sh
	$(PY) -m pytest -q

# make chapter CHAPTER=layer-skipping MODEL=facebook/esm2_t12_35M_UR50D   (adds a model to the chapter)
# make chapter CHAPTER=logit-lens MODELS=esm2_t6_8M,antiberty             (replaces the chapter's models)
chapter: $(STAMP)
	$(PY) -m plmdepth chapter $(CHAPTER) $(if $(MODEL),--add-model $(MODEL)) $(if $(MODELS),--models $(MODELS))

models: $(STAMP)
	$(PY) -m plmdepth models

clean:
	rm -rf book/_build book/chapters/*.ipynb
