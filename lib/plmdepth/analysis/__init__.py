"""Analysis: the numbers the book's verdicts rest on, as functions from results tables to tables.

    claims            the paper's claims (a)-(e) tested per model, with their parameters
    depth_efficiency  the relative depth from which every layer refines
    truncation        the truncation frontier: the model cut at 1/2 and 3/4 of its blocks
    variant_effects   the best and the final layer of each model on each assay

They read results folders (`plmdepth.results`) and return DataFrames; the sentences and tables the
book writes from them are `plmdepth.publish`'s.
"""
