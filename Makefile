# plmdepth: `make book` builds the HTML book, `make test` runs the tests.
# Both create or update the virtual environment .venv from the pinned requirements first.
# `make test` also creates .venv-esm, the second environment for ESM C and ESM3 (`make esm-env`).

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

ESM_VENV  := .venv-esm
ESM_PY    := $(ESM_VENV)/bin/python
ESM_STAMP := $(ESM_VENV)/.installed

.PHONY: book test test-fast chapter models clean esm-env

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# ESM C and ESM3 need EvolutionaryScale's `esm`, whose import name clashes with fair-esm's: a second
# environment, pinned in requirements-esm.txt (installed without dependency resolution; see its header).
$(ESM_STAMP): requirements-esm.txt pyproject.toml
	test -x $(ESM_PY) || $(PYTHON) -m venv $(ESM_VENV)
	$(ESM_PY) -m pip install --quiet --upgrade pip
	$(ESM_PY) -m pip install --quiet --no-deps -r requirements-esm.txt
	$(ESM_PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(ESM_PY) -c "import esm.models.esmc, esm.models.esm3, plmdepth.models.evolutionaryscale"
	touch $(ESM_STAMP)

esm-env: $(ESM_STAMP)

# The book goes through the Snakemake workflow (workflow/Snakefile): measurements, chapters, HTML.
# Finished measurements are kept; the HTML is rebuilt when a chapter, page, result or the commit changed.
book: $(STAMP)
	$(PY) -m plmdepth book

test: $(STAMP) $(ESM_STAMP)
	bash scripts/install_browser.sh
	$(PY) -m pytest -q

# the unit tests alone (no book, no shipped weights, no browser, no SLURM, none over 20 s): about 2 minutes
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not book and not shipped and not browser and not slurm and not slow"

# make chapter CHAPTER=layer-skipping MODEL=facebook/esm2_t12_35M_UR50D   (adds a model to the chapter)
# make chapter CHAPTER=logit-lens MODELS=esm2_t6_8M,antiberty             (replaces the chapter's models)
chapter: $(STAMP)
	$(PY) -m plmdepth chapter $(CHAPTER) $(if $(MODEL),--add-model $(MODEL)) $(if $(MODELS),--models $(MODELS))

models: $(STAMP)
	$(PY) -m plmdepth models

clean:
	rm -rf book/_build book/chapters/*.ipynb logs .snakemake
