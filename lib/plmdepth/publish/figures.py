"""Figures: altair charts rendered to static SVG so the book works with no network.

altair's default renderer loads vega from a CDN and shows nothing offline; every chart
here is turned into SVG by vl-convert (which bundles vega) before it reaches the book.
"""

from __future__ import annotations

import io

import altair as alt
import pandas as pd

METRIC_TITLES = {
    "kl": "KL(p_l ‖ p_L) [nats]",
    "top1_agreement": "top-1 agreement with the final layer",
    "top1_accuracy": "top-1 accuracy (true residue)",
    "prob_l2_max": "max output-probability change (L2)",
    "prob_l2_mean": "mean over units of max probability change (L2)",
    "kl_mean": "mean KL(p ‖ p') [nats]",
    "ratio_mean": "‖Δ_l‖ / ‖h_l‖ (mean)",
}


def depth_curves(frame: pd.DataFrame, metric: str, title: str | None = None, width: int = 420,
                 height: int = 260) -> alt.Chart:
    """One line per model of `metric` against relative depth l/L, with its 95% band if present."""
    base = alt.Chart(frame).encode(
        x=alt.X("relative_depth:Q", title="relative depth l / L", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("model:N", title="model"),
    )
    line = base.mark_line(point=True).encode(
        y=alt.Y(f"{metric}:Q", title=METRIC_TITLES.get(metric, metric)),
        tooltip=["model"] + [c for c in ("layer", "skipped") if c in frame]
        + [alt.Tooltip(f"{metric}:Q", format=".3f")],
    )
    layers = [line]
    if f"{metric}_low" in frame and f"{metric}_high" in frame:
        layers.insert(0, base.mark_area(opacity=0.2).encode(y=f"{metric}_low:Q", y2=f"{metric}_high:Q"))
    chart = alt.layer(*layers).properties(width=width, height=height)
    return chart.properties(title=title) if title else chart


def to_svg(chart: alt.Chart) -> str:
    """The chart as a standalone SVG string (no network needed)."""
    buffer = io.StringIO()
    chart.save(buffer, format="svg")
    return buffer.getvalue()


def skip_heatmap(frame: pd.DataFrame, value: str = "effect_max", size: int = 180) -> alt.Chart:
    """Skipped block × affected block heat map of M2, one panel per model."""
    panels = []
    for model, part in frame.groupby("model", sort=False):
        panels.append(alt.Chart(part).mark_rect().encode(
            x=alt.X("affected:O", title="affected block j"),
            y=alt.Y("skipped:O", title="skipped block s"),
            color=alt.Color(f"{value}:Q", title=value.replace("_", " "), scale=alt.Scale(scheme="viridis")),
            tooltip=["skipped", "affected", alt.Tooltip(f"{value}:Q", format=".3f")],
        ).properties(width=size, height=size, title=str(model)))
    return alt.hconcat(*panels).resolve_scale(color="independent")


def contribution_curves(frame: pd.DataFrame, value: str = "ratio_mean", width: int = 220,
                        height: int = 200) -> alt.Chart:
    """M1 per part (block / attention / mlp), one line per model, against relative depth."""
    return alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("relative_depth:Q", title="relative depth (l+1) / L", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y(f"{value}:Q", title=value.replace("_", " ")),
        color=alt.Color("model:N"),
        tooltip=["model", "layer", "part", alt.Tooltip(f"{value}:Q", format=".3f")],
    ).properties(width=width, height=height).facet(column=alt.Column("part:N", title=None))


def variant_effect_curves(frame: pd.DataFrame, width: int = 170, height: int = 170) -> alt.Chart:
    """M5: Spearman ρ per layer against relative depth, one panel per assay (and the mean),
    one line per model, with the final layer's value marked by a larger point."""
    base = alt.Chart().encode(
        x=alt.X("relative_depth:Q", title="relative depth l / L", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("spearman:Q", title="Spearman ρ"),
        color=alt.Color("model:N"),
        tooltip=["model", "assay", "layer", alt.Tooltip("spearman:Q", format=".3f")],
    )
    band = alt.Chart().mark_area(opacity=0.15).encode(
        x="relative_depth:Q", y="spearman_low:Q", y2="spearman_high:Q", color="model:N")
    lines = base.mark_line(point=True)
    final = base.mark_point(size=140, shape="diamond", filled=True).transform_filter("datum.relative_depth == 1")
    return alt.layer(band, lines, final, data=frame).properties(width=width, height=height).facet(
        facet=alt.Facet("assay:N", title=None), columns=3)
