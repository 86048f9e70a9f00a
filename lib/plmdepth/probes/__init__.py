"""Probes: the measurements of how a model uses its depth, each on the `ProteinLM` interface.

    streaming        batches through an accumulator, with a resumable checkpoint
    logit_lens       M4: every layer read through the model's own head (and `layer_log_probs`)
    layer_skipping   M2, M3: what skipping one block changes downstream and at the output
    contributions    M1: the size and direction of every block's (and sublayer's) update
    variant_effects  M5: per-layer zero-shot variant-effect prediction on deep-mutational scans
    variant_scoring  M5: the scores by ProteinGym's protocol (marginals, windows, prefix cache)
    tuned_lens       every layer read through a learned affine translator (beside the logit lens)
    measurements     the table of measurements the runner knows, by name
"""
