"""Variant effects per model and assay: the best layer and the final layer (functions of M5's table)."""

from __future__ import annotations

import pandas as pd


def final_layers(table: pd.DataFrame) -> pd.DataFrame:
    """Per (model, assay), Spearman rho of the final layer (`final-layer ρ`)."""
    return (table[table["relative_depth"] == 1][["model", "assay", "spearman"]]
            .rename(columns={"spearman": "final-layer ρ"}))


def best_layers(table: pd.DataFrame) -> pd.DataFrame:
    """Per (model, assay), the layer of highest Spearman rho, its relative depth and rho, and the final
    layer's rho."""
    best = (table.loc[table.groupby(["model", "assay"], sort=False)["spearman"].idxmax()]
            [["model", "assay", "layer", "relative_depth", "spearman"]]
            .rename(columns={"layer": "best layer", "relative_depth": "best l / L", "spearman": "best ρ"}))
    return best.merge(final_layers(table), on=["model", "assay"])
