"""Figures: altair charts rendered to static SVG so the book works with no network.

altair's default renderer loads vega from a CDN and shows nothing offline; every chart
here is turned into SVG by vl-convert (which bundles vega) before it reaches the book.

Every chart is sized to fit the book's text column (about 768 px on desktop) at its
natural size, with text at least 11 px, so that scaled down to a phone it stays legible.

Untrained twins (rows with a `twin_of`, `Results.tables`) are drawn with the model they are the
twin of, in its colour: a dashed line, the mean over their seeds, and a pale band, their range
over seeds. An architecture run untrained only is named "<model> (untrained)".
"""

from __future__ import annotations

import io
import math

import altair as alt
import pandas as pd

from plmdepth.probes.layer_skipping import zero_by_construction

#: axis / colour-bar titles of the plotted quantities (words, not variable names)
METRIC_TITLES = {
    "kl": "KL(p_l ‖ p_L) [nats]",
    "top1_agreement": "top-1 agreement with the final layer",
    "top1_accuracy": "top-1 accuracy (true residue)",
    "prob_l2_max": ["L2 distance of output probability vectors", "(max over held-out positions and units)"],
    "prob_l2_mean": ["L2 distance of output probability vectors", "(max over held-out positions, mean over units)"],
    "kl_mean": ["KL divergence of output probabilities [nats]", "(mean over held-out positions and units)"],
    "kl_max": ["KL divergence of output probabilities [nats]", "(mean over held-out positions, max over units)"],
    "ratio_mean": "‖Δ_l‖ / ‖h_l‖, mean over tokens",
    "ratio_max": "‖Δ_l‖ / ‖h_l‖, max over tokens",
    "cosine_mean": "cos(Δ_l, h_l), mean over tokens",
    "effect_max": ["r(s, j): relative change of block j's update when block s is skipped",
                   "(max over held-out positions, max over units)"],
    "effect_mean": ["r(s, j): relative change of block j's update when block s is skipped",
                    "(max over held-out positions, mean over units)"],
    "spearman": "Spearman ρ with measured fitness",
}
#: short names of the probability-change metrics, for panel headers
_L2_PANELS = {"prob_l2_max": "max over units", "prob_l2_mean": "mean over units"}
_L2_AXIS = ["L2 distance of output probability vectors", "(max over held-out positions)"]
#: ceiling of the L2 distance between two probability vectors
L2_CEILING = math.sqrt(2)
#: chance level of top-1 accuracy over the 20 canonical amino acids
CHANCE_TOP1 = 1 / 20

FONT = 11  # smallest text at natural size (px)


def metric_title(metric: str):
    return METRIC_TITLES.get(metric, metric.replace("_", " "))


def _configure(chart, legend_below: bool = False):
    """Legible text and opaque legend symbols (bands are pale); `legend_below` puts the legends under
    the plot (in rows of up to four entries), leaving the plot the full width on a phone."""
    below = {"orient": "bottom", "direction": "horizontal", "columns": 4} if legend_below else {}
    return (chart.configure_axis(labelFontSize=FONT, titleFontSize=FONT + 1)
            .configure_legend(labelFontSize=FONT, titleFontSize=FONT + 1, symbolOpacity=1,
                              labelLimit=200, **below)
            .configure_header(labelFontSize=FONT + 1, titleFontSize=FONT + 1)
            .configure_title(fontSize=FONT + 2)
            .configure_text(fontSize=FONT))


def _hline(value: float, label: str) -> alt.LayerChart:
    """A labelled dashed horizontal rule at `value`."""
    data = pd.DataFrame({"y": [value], "label": [label]})
    rule = alt.Chart(data).mark_rule(strokeDash=[5, 4], color="#555").encode(y="y:Q")
    text = alt.Chart(data).mark_text(align="right", baseline="bottom", dx=-4, dy=-2, x="width", color="#333",
                                     fontSize=FONT).encode(y="y:Q", text="label:N")
    return rule + text


def _baseline_layers(y_title) -> list:
    """Dashed rules at `baseline_value`, one per row that has one, labelled with its `predictor`."""
    y = alt.Y("baseline_value:Q", title=y_title)
    rows = alt.Chart().transform_filter("isValid(datum.baseline_value)")
    rule = rows.mark_rule(strokeDash=[5, 4], color="#555").encode(
        y=y, tooltip=["model", "predictor", alt.Tooltip("baseline_value:Q", title="baseline", format=".3f")])
    label = {"baseline": "bottom", "dy": -2, "color": "#333", "fontSize": FONT}
    left = (rows.transform_filter("datum.predictor == 'unigram'")
            .mark_text(align="left", x=0, dx=4, **label).encode(y=y, text="predictor:N"))
    right = (rows.transform_filter("datum.predictor != 'unigram'")
             .mark_text(align="right", x="width", dx=-4, **label).encode(y=y, text="predictor:N"))
    return [rule, left, right]


TWIN_OPACITY = 0.12
TWIN_DASH = [5, 3]
TRAINED, UNTRAINED = "trained", "untrained twins (mean, range)"


def _dash(kind: str):
    """The line style of trained curves (solid) and twins (dashed), with a legend of its own."""
    return alt.StrokeDash("kind:N", title=None, scale=alt.Scale(domain=[TRAINED, UNTRAINED], range=[[1, 0], TWIN_DASH]),
                          legend=alt.Legend(orient="bottom", direction="horizontal", symbolType="stroke",
                                            symbolStrokeColor="#555", symbolStrokeWidth=2, symbolSize=400))


def untrained_name(name: str) -> str:
    return f"{name} (untrained)"


def split_twins(frame: pd.DataFrame, metric: str, keys: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the trained models' rows, the twins' summary): per trained model (`model` = its name, or
    "<name> (untrained)" when the frame has no trained rows of it) and `keys`, `metric` as the mean
    over seeds and `<metric>_twin_min`, `<metric>_twin_max` their range, and `n_seeds`."""
    if "twin_of" not in frame or frame["twin_of"].isna().all():
        return frame, pd.DataFrame()
    twins, trained = frame[frame["twin_of"].notna()], frame[frame["twin_of"].isna()]
    summary = (twins.groupby(["twin_of", *keys], sort=False)[metric]
               .agg(**{metric: "mean", f"{metric}_twin_min": "min", f"{metric}_twin_max": "max", "n_seeds": "count"})
               .reset_index())
    known = set(trained["model"])
    summary["model"] = [m if m in known else untrained_name(m) for m in summary["twin_of"]]
    return trained.drop(columns=["twin_of", "init_seed"], errors="ignore"), summary


def _model_order(trained: pd.DataFrame, twins: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys([*trained["model"], *(twins["model"] if len(twins) else [])]))


def _twin_layers(twins: alt.Chart, metric: str, x, y_title, color) -> list:
    """The twins' band (range over seeds) and dashed mean line, in `color`'s colours; `twins` is a chart
    of their summary (`split_twins`, with `kind`), its own data or a filter of a facet's."""
    tooltip = ["model", alt.Tooltip(f"{metric}:Q", title="untrained mean", format=".3f"),
               alt.Tooltip(f"{metric}_twin_min:Q", title="min", format=".3f"),
               alt.Tooltip(f"{metric}_twin_max:Q", title="max", format=".3f"), "n_seeds:Q"]
    return [twins.mark_area(opacity=TWIN_OPACITY).encode(
                x=x, y=alt.Y(f"{metric}_twin_min:Q", title=y_title), y2=f"{metric}_twin_max:Q", color=color),
            twins.mark_line(strokeWidth=1.5).encode(
                x=x, y=alt.Y(f"{metric}:Q", title=y_title), color=color, strokeDash=_dash(UNTRAINED), tooltip=tooltip)]


def _reference_lines(metric: str) -> list:
    if metric.startswith("prob_l2"):
        return [_hline(L2_CEILING, "ceiling √2")]
    if metric == "top1_accuracy":
        return [_hline(CHANCE_TOP1, "chance 1/20")]
    return []


def _curve_layers(frame: pd.DataFrame, metric: str, y_title, y_scale=None) -> list:
    """Band (if present), line with points, hollow markers for zero-by-construction points; the
    untrained twins' band and dashed mean behind them."""
    zero = zero_by_construction(frame)
    _, twins = split_twins(frame[~zero], metric, ["relative_depth"])  # zero by construction: not averaged
    frame, _ = split_twins(frame, metric, ["relative_depth"])
    zero = zero_by_construction(frame)
    drawn, hollow = frame[~zero], frame[zero]
    x = alt.X("relative_depth:Q", title="relative depth l / L", scale=alt.Scale(domain=[0, 1]))
    color = alt.Color("model:N", title="model", sort=_model_order(frame, twins))
    y = alt.Y(f"{metric}:Q", title=y_title, **({"scale": y_scale} if y_scale is not None else {}))
    tooltip = (["model"] + [c for c in ("layer", "skipped") if c in frame]
               + [alt.Tooltip(f"{metric}:Q", format=".3f")])
    layers = _twin_layers(alt.Chart(twins.assign(kind=UNTRAINED)), metric, x, y_title, color) if len(twins) else []
    if f"{metric}_low" in frame and f"{metric}_high" in frame:
        layers.append(alt.Chart(drawn).mark_area(opacity=0.2).encode(
            x=x, y=alt.Y(f"{metric}_low:Q", title=y_title), y2=f"{metric}_high:Q", color=color))
    dash = {"strokeDash": _dash(TRAINED)} if len(twins) else {}  # points apart: a legend of line styles needs it
    trained = alt.Chart(drawn.assign(kind=TRAINED))
    layers += [trained.mark_line().encode(x=x, y=y, color=color, tooltip=tooltip, **dash),
               trained.mark_point(filled=True, opacity=1).encode(x=x, y=y, color=color, tooltip=tooltip)]
    if len(hollow):
        layers.append(alt.Chart(hollow).mark_point(filled=False, size=60, strokeWidth=1.5).encode(
            x=x, y=y, color=color, tooltip=tooltip))
    return layers


def depth_curves(frame: pd.DataFrame, metric: str, title: str | None = None, width: int = 460,
                 height: int = 260) -> alt.LayerChart:
    """One line per model of `metric` against relative depth l/L, with its 95% band if present.

    L2 distances of probability vectors get their ceiling √2 and top-1 accuracy its chance
    level as labelled dashed rules; points that are zero by construction (the last block in
    "future" skip mode) are hollow markers off the line.
    """
    chart = alt.layer(*_curve_layers(frame, metric, metric_title(metric)),
                      *_reference_lines(metric)).properties(width=width, height=height)
    chart = chart.properties(title=title) if title else chart
    return _configure(chart, legend_below="twin_of" in frame)


def skip_output_curves(frame: pd.DataFrame, metrics=("prob_l2_max", "prob_l2_mean"), width: int = 255,
                       height: int = 240) -> alt.HConcatChart:
    """M3 side by side: the output-probability change aggregated over units by max and by mean,
    on one y scale with the ceiling √2."""
    scale = alt.Scale(domain=[0, 1.5])
    panels = [alt.layer(*_curve_layers(frame, m, _L2_AXIS if i == 0 else None, scale), *_reference_lines(m))
              .properties(width=width, height=height, title=_L2_PANELS.get(m, m))
              for i, m in enumerate(metrics)]
    return _configure(alt.hconcat(*panels, spacing=12).resolve_scale(y="shared"), legend_below=True)


def to_svg(chart: alt.Chart) -> str:
    """The chart as a standalone SVG string (no network needed)."""
    buffer = io.StringIO()
    chart.save(buffer, format="svg")
    return buffer.getvalue()


def skip_heatmap(frame: pd.DataFrame, value: str = "effect_max", size: int = 170, columns: int = 3
                 ) -> alt.FacetChart:
    """Skipped block × affected block heat map of M2, one panel per model, on one colour scale
    from 0 shared by every model. Twins of a trained model are left out (its other figures show
    them); an architecture run untrained only is shown as the mean over its seeds."""
    trained, twins = split_twins(frame, value, ["skipped", "affected"])
    if len(twins):
        frame = pd.concat([trained, twins[~twins["model"].isin(set(trained["model"]))]], ignore_index=True)
    order = list(frame["model"].unique())
    heat = alt.Chart().mark_rect().encode(
        x=alt.X("affected:O", title="affected block j", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("skipped:O", title="skipped block s"),
        color=alt.Color(f"{value}:Q", title=metric_title(value),
                        scale=alt.Scale(scheme="viridis", domainMin=0),
                        legend=alt.Legend(orient="bottom", direction="horizontal", gradientLength=260,
                                          titleLimit=400)),
        tooltip=["model", "skipped", "affected", alt.Tooltip(f"{value}:Q", format=".3f")],
    ).properties(width=size, height=size)
    chart = alt.layer(heat, data=frame).facet(
        facet=alt.Facet("model:N", title=None, sort=order), columns=min(columns, len(order)),
        spacing={"row": 16, "column": 24},
    ).resolve_scale(x="independent", y="independent")
    return _configure(chart)


CONTRIBUTION_PARTS = ["block", "attention", "mlp"]
PART_COLOURS = {"block": "#7f7f7f", "attention": "#1f77b4", "mlp": "#ff7f0e"}  # grey, blue, orange
#: one-line y titles of the part-skipping panels (a facet row repeats its title)
PART_Y_TITLES = {"prob_l2_mean": "output change (L2)", "kl_mean": "output change (KL, nats)"}


def with_twin_series(frame: pd.DataFrame, metric: str, keys: list[str]) -> pd.DataFrame:
    """One frame for a faceted chart: the trained rows (`series` "trained") and the twins' summary
    (`series` "twins", `split_twins`)."""
    trained, twins = split_twins(frame, metric, keys)
    return pd.concat([trained.assign(series="trained", kind=TRAINED), twins.assign(series="twins", kind=UNTRAINED)],
                     ignore_index=True)


def _facet_twin_layers(data: pd.DataFrame, metric: str, x, y_title, color) -> list:
    """`_twin_layers` for a faceted chart's shared data (`with_twin_series`); none without twins."""
    if not (data["series"] == "twins").any():
        return []
    return _twin_layers(alt.Chart().transform_filter("datum.series == 'twins'"), metric, x, y_title, color)


def contribution_curves(frame: pd.DataFrame, value: str = "ratio_mean", width: int = 180,
                        height: int = 190) -> alt.FacetChart:
    """M1 per part (block | attention | mlp, in this order), one line per model, against
    relative depth (untrained twins dashed, with their range)."""
    parts = [p for p in CONTRIBUTION_PARTS if p in set(frame["part"])] + sorted(
        set(frame["part"]) - set(CONTRIBUTION_PARTS))
    data = with_twin_series(frame, value, ["part", "relative_depth"])
    x = alt.X("relative_depth:Q", title="relative depth (l+1) / L", scale=alt.Scale(domain=[0, 1]))
    y_title = metric_title(value)
    color = alt.Color("model:N", title="model", sort=list(data["model"].unique()),
                      legend=alt.Legend(orient="bottom", direction="horizontal"))
    dash = {"strokeDash": _dash(TRAINED)} if (data["series"] == "twins").any() else {}
    trained = alt.Chart().transform_filter("datum.series == 'trained'")
    encoding = dict(x=x, y=alt.Y(f"{value}:Q", title=y_title), color=color,
                    tooltip=["model", "layer", "part", alt.Tooltip(f"{value}:Q", format=".3f")])
    line = [trained.mark_line().encode(**encoding, **dash), trained.mark_point(filled=True, opacity=1).encode(**encoding)]
    chart = alt.layer(*_facet_twin_layers(data, value, x, y_title, color), *line, data=data).properties(
        width=width, height=height).facet(column=alt.Column("part:N", title=None, sort=parts), spacing=14)
    return _configure(chart)


def part_skipping_curves(frame: pd.DataFrame, metric: str = "prob_l2_mean", width: int = 210, height: int = 150,
                         columns: int = 2) -> alt.FacetChart:
    """Part skipping: the output change when block s, only its attention or only its MLP is skipped
    (colour), in total (later blocks rerun, solid) and directly (the update taken out of the last
    stream, dashed), against relative depth; one panel per model, on one y scale."""
    parts = [p for p in CONTRIBUTION_PARTS if p in set(frame["part"])]
    effects = [e for e in ("total", "direct") if e in set(frame["effect"])]
    order = list(frame["model"].unique())
    encoding = dict(
        x=alt.X("relative_depth:Q", title="relative depth s / L", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y(f"{metric}:Q", title=PART_Y_TITLES.get(metric, metric)),
        color=alt.Color("part:N", title="skipped", sort=parts, legend=alt.Legend(orient="bottom", direction="horizontal"),
                        scale=alt.Scale(domain=parts, range=[PART_COLOURS[p] for p in parts])),
        strokeDash=alt.StrokeDash("effect:N", title="effect", sort=effects,
                                  scale=alt.Scale(domain=effects, range=[[1, 0], [5, 3]][:len(effects)]),
                                  legend=alt.Legend(orient="bottom", direction="horizontal", symbolType="stroke",
                                                    symbolStrokeWidth=2, symbolSize=300, symbolStrokeColor="#333")),
        tooltip=["model", "skipped", "part", "effect", alt.Tooltip(f"{metric}:Q", format=".4f")])
    points = {k: v for k, v in encoding.items() if k != "strokeDash"}  # points apart: a legend of line styles needs it
    chart = alt.layer(alt.Chart().mark_line().encode(**encoding),
                      alt.Chart().mark_point(filled=True, size=18, opacity=1).encode(**points)).properties(
        width=width, height=height)
    faceted = alt.layer(chart, data=frame).facet(facet=alt.Facet("model:N", title=None, sort=order),
                                                columns=min(columns, len(order)), spacing={"row": 16, "column": 16})
    return _configure(faceted.resolve_scale(y="shared"))


def variant_effect_curves(frame: pd.DataFrame, width: int = 150, height: int = 140) -> alt.FacetChart:
    """M5: Spearman ρ per layer against relative depth, one panel per assay and the mean (last),
    one line per model with its bootstrap band, the final layer's value marked by a larger point,
    and behind them in grey the permutation null's 95% range (`spearman_null_low/high`, one faint
    band per model; none for results without those columns). Up to three panels share a row; more
    wrap two to a row, so that each stays legible on a phone."""
    assays = [a for a in frame["assay"].unique() if a != "mean"] + (["mean"] if "mean" in set(frame["assay"]) else [])
    color = alt.Color("model:N", title="model", sort=list(frame["model"].unique()),
                      legend=alt.Legend(orient="bottom", direction="horizontal"))
    has_null = {"spearman_null_low", "spearman_null_high"} <= set(frame.columns)
    tooltip = ["model", "assay", "layer", alt.Tooltip("spearman:Q", format=".3f")]
    if has_null and "p_permutation" in frame:
        tooltip.append(alt.Tooltip("p_permutation:Q", title="p (permutation)", format=".3g"))
    base = alt.Chart().encode(
        x=alt.X("relative_depth:Q", title="l / L", scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(values=[0, 0.5, 1], format=".1~f")),
        y=alt.Y("spearman:Q", title=metric_title("spearman")),
        color=color,
        tooltip=tooltip,
    )
    null = alt.Chart().mark_area(opacity=0.18, color="grey").encode(
        x="relative_depth:Q", y="spearman_null_low:Q", y2="spearman_null_high:Q", detail="model:N")
    band = alt.Chart().mark_area(opacity=0.15).encode(
        x="relative_depth:Q", y="spearman_low:Q", y2="spearman_high:Q", color=color)
    lines = base.mark_line(point=True)
    final = base.mark_point(size=110, shape="diamond", filled=True).transform_filter("datum.relative_depth == 1")
    layers = ([null] if has_null else []) + [band, lines, final]
    chart = alt.layer(*layers, data=frame).properties(width=width, height=height).facet(
        facet=alt.Facet("assay:N", title=None, sort=assays,
                        header=alt.Header(labelExpr="split(datum.label, '_')", labelFontSize=FONT)),
        columns=len(assays) if len(assays) <= 3 else 2, spacing=10)
    return _configure(chart)


def depth_efficiency_chart(frame: pd.DataFrame, width: int = 420, height: int = 240) -> alt.LayerChart:
    """Per model, the share of depth spent refining (1 - d*) against its number of blocks; models
    that land on the same point share one label. Untrained twins are hollow points in their trained
    model's colour (an architecture run untrained only: in its own, "<model> (untrained)")."""
    frame = frame.copy()
    twin = frame["twin_of"].notna() if "twin_of" in frame else pd.Series(False, index=frame.index)
    known = set(frame.loc[~twin, "model"])
    frame["colour"] = [(t if t in known else untrained_name(t)) if is_twin else m
                       for m, t, is_twin in zip(frame["model"], frame.get("twin_of", frame["model"]), twin)]
    trained = frame[~twin]
    labels = (trained.groupby(["blocks", "refining share of depth"], sort=False)["model"].agg(", ".join)
              .reset_index())
    x = alt.X("blocks:Q", title="blocks L", scale=alt.Scale(zero=False, padding=30),
              axis=alt.Axis(format="d", tickMinStep=1))
    y = alt.Y("refining share of depth:Q", title="share of depth spent refining, 1 − d*", scale=alt.Scale(domain=[0, 1]))
    color = alt.Color("colour:N", title="model", sort=list(dict.fromkeys(frame["colour"])))
    tooltip = ["model", "blocks", alt.Tooltip("refining from l / L:Q", format=".3f"), "tau", "kappa"]
    points = alt.Chart(trained).mark_point(filled=True, size=120, opacity=1).encode(
        x=x, y=y, color=color, tooltip=tooltip)
    hollow = alt.Chart(frame[twin]).mark_point(filled=False, size=70, strokeWidth=1.5).encode(
        x=x, y=y, color=color, tooltip=tooltip)
    text = alt.Chart(labels).mark_text(dy=-14, fontSize=12).encode(
        x="blocks:Q", y="refining share of depth:Q", text="model:N")
    return _configure(alt.layer(hollow, points, text).properties(width=width, height=height))


def lens_curves(frame: pd.DataFrame, metric: str, x: str = "relative_depth", x_title: str = "relative depth l / L",
                y_title=None, width: int = 150, height: int = 140, baselines: pd.DataFrame | None = None
                ) -> alt.FacetChart:
    """Logit lens against tuned lens: one panel per model (two to a row, about 380 px wide in all, so
    that a phone shows it nearly at natural size), one line per `lens` value (any further series, such
    as one skipped block, share the axes); a model's untrained twins in its panel, dashed with their
    range, and an architecture run untrained only in a panel of its own. `baselines` (columns model, predictor and `metric`:
    `analysis.truncation.baseline_rules`) are drawn in each model's own panel as dashed rules labelled
    with the predictor's name ("unigram" at the left, any other at the right)."""
    frame = with_twin_series(frame, metric, ["lens", x])
    models = list(frame["model"].unique())
    y_title = y_title or metric_title(metric)
    color = alt.Color("lens:N", title="readout", sort=["logit", "tuned", "skip block alone"],
                      legend=alt.Legend(orient="bottom", direction="horizontal"))
    x_axis = alt.X(f"{x}:Q", title=x_title, scale=alt.Scale(domain=[0, 1]),
                   axis=alt.Axis(values=[0, 0.25, 0.5, 0.75, 1], format=".2~f"))
    dash = {"strokeDash": _dash(TRAINED)} if (frame["series"] == "twins").any() else {}
    encoding = dict(x=x_axis, y=alt.Y(f"{metric}:Q", title=y_title), color=color,
                    tooltip=["model", "lens", "layer", alt.Tooltip(f"{metric}:Q", format=".3f")])
    trained = alt.Chart().transform_filter("datum.series == 'trained'")
    lines = [trained.mark_line().encode(**encoding, **dash), trained.mark_point(filled=True, opacity=1).encode(**encoding)]
    layers, data = [*_facet_twin_layers(frame, metric, x_axis, y_title, color), *lines], frame
    if baselines is not None and len(baselines):  # in the facet's data, so that each panel draws its model's
        rules = baselines.loc[baselines["model"].isin(models), ["model", "predictor", metric]]
        data = pd.concat([frame, rules.rename(columns={metric: "baseline_value"}).assign(series="baseline")],
                         ignore_index=True)
        layers = [*layers, *_baseline_layers(y_title)]
    chart = alt.layer(*layers, data=data).properties(width=width, height=height).facet(
        facet=alt.Facet("model:N", title=None, sort=models, header=alt.Header(labelFontSize=FONT + 1)),
        columns=min(2, len(models)), spacing=12)
    return _configure(chart)


def truncation_spearman_curves(frame: pd.DataFrame, width: int = 150, height: int = 140) -> alt.FacetChart:
    """Variant effects on the truncation frontier: Spearman ρ of the model cut after k of its L layers
    (the layer-k readout of M5) against the share k / L of layers kept, one panel per assay (the mean
    last), two panels to a row (about 380 px wide in all, as `variant_effect_curves`, so that a phone
    shows it nearly at natural size), one line per model with its bootstrap band, in a palette of its
    own (the lens figures beside it colour the readouts). The full model (k = L) is a diamond, the cut
    at three quarters a dashed rule and ρ = 0 a grey rule."""
    assays = [a for a in frame["assay"].unique() if a != "mean"] + (["mean"] if "mean" in set(frame["assay"]) else [])
    color = alt.Color("model:N", title="model", sort=list(frame["model"].unique()), scale=alt.Scale(scheme="dark2"),
                      legend=alt.Legend(orient="bottom", direction="horizontal"))
    scale, axis = alt.Scale(domain=[0, 1]), alt.Axis(values=[0, 0.25, 0.5, 0.75, 1], format=".2~f")
    x = alt.X("relative_depth:Q", title="layers kept, k / L", scale=scale, axis=axis)
    base = alt.Chart().encode(
        x=x,
        y=alt.Y("spearman:Q", title=["Spearman ρ with", "measured fitness"]),
        color=color,
        tooltip=["model", "assay", alt.Tooltip("layer:Q", title="layers kept k"),
                 alt.Tooltip("spearman:Q", format=".3f")],
    )
    layers = [alt.Chart().mark_rule(color="#999").encode(y=alt.datum(0)),
              alt.Chart().mark_rule(strokeDash=[5, 4], color="#555").encode(  # the same axis, or it is dropped
                  x=alt.XDatum(0.75, title="layers kept, k / L", scale=scale, axis=axis))]
    if "spearman_low" in frame and "spearman_high" in frame:
        layers.append(alt.Chart().mark_area(opacity=0.15).encode(
            x=x, y="spearman_low:Q", y2="spearman_high:Q", color=color))
    layers += [base.mark_line(point=True),
               base.mark_point(size=110, shape="diamond", filled=True).transform_filter("datum.relative_depth == 1")]
    chart = alt.layer(*layers, data=frame).properties(width=width, height=height).facet(
        facet=alt.Facet("assay:N", title=None, sort=assays,
                        # "TADBP_HUMAN_Bolognesi_2019" on two lines: "TADBP_HUMAN", "Bolognesi 2019"
                        header=alt.Header(labelExpr="[join(slice(split(datum.label, '_'), 0, 2), '_'), "
                                                    "join(slice(split(datum.label, '_'), 2), ' ')]",
                                          labelFontSize=FONT + 1)),
        columns=min(2, len(assays)), spacing=10)
    return _configure(chart)


def ladder_loss_curves(manifest: dict, window: int = 20, width: int = 460, height: int = 240) -> alt.LayerChart:
    """The depth ladder's training: the masked-LM loss against the residues seen, one line per rung
    (a running mean over `window` steps), and each rung's held-out loss as a point at the end."""
    rows, ends = [], []
    for rung in manifest["rungs"]:
        losses = pd.Series(rung["losses"], dtype=float)
        per_step = rung["tokens"] / len(losses)
        smooth = losses.rolling(window, min_periods=1).mean()
        rows += [{"blocks": rung["depth"], "residues seen (millions)": (i + 1) * per_step / 1e6, "loss": v}
                 for i, v in enumerate(smooth)]
        ends.append({"blocks": rung["depth"], "residues seen (millions)": rung["tokens"] / 1e6,
                     "held-out loss": rung["heldout_loss"], "perplexity": rung["heldout_perplexity"]})
    color = alt.Color("blocks:O", title="blocks L", scale=alt.Scale(scheme="viridis"))
    x = alt.X("residues seen (millions):Q", title="residues seen (millions)")
    lines = alt.Chart(pd.DataFrame(rows)).mark_line().encode(
        x=x, y=alt.Y("loss:Q", title=["masked-LM loss [nats]", f"(training: running mean of {window} steps)"],
                     scale=alt.Scale(zero=False)),
        color=color, tooltip=["blocks", alt.Tooltip("loss:Q", format=".3f")])
    points = alt.Chart(pd.DataFrame(ends)).mark_point(shape="diamond", filled=True, size=90, opacity=1).encode(
        x=x, y="held-out loss:Q", color=color,
        tooltip=["blocks", alt.Tooltip("held-out loss:Q", format=".4f"), alt.Tooltip("perplexity:Q", format=".3f")])
    return _configure(alt.layer(lines, points).properties(width=width, height=height))


def ladder_trend_chart(numbers: pd.DataFrame, width: int = 400, height: int = 170) -> alt.VConcatChart:
    """Per number of `analysis.depth_ladder.ladder_numbers` (claim (a)'s ratio, then (b)'s KL share), one
    panel against the rungs' blocks (log scale), stacked so that a phone shows them near natural size:
    the trained rungs as points with their 95% intervals joined by a line, each twin ladder's rungs (one
    per seed) as hollow grey points joined by a dashed line."""
    from plmdepth.analysis.depth_ladder import NUMBERS
    x = alt.X("blocks:Q", title="blocks L (log scale)", scale=alt.Scale(type="log", base=2, padding=12),
              axis=alt.Axis(values=sorted(numbers["blocks"].unique().tolist()), format="d"))
    kind = alt.StrokeDash("kind:N", title=None, scale=alt.Scale(domain=[TRAINED, "untrained twins (one line per seed)"],
                                                                range=[[1, 0], TWIN_DASH]),
                          legend=alt.Legend(orient="bottom", direction="horizontal", symbolType="stroke",
                                            symbolStrokeColor="#555", symbolStrokeWidth=2, symbolSize=400))
    panels = []
    for number in [n for n in NUMBERS.values() if n in set(numbers["number"])]:
        frame = numbers[numbers["number"] == number]
        trained = frame[frame["group"] == "trained"].assign(kind=TRAINED)
        twins = frame[frame["group"] != "trained"].assign(kind="untrained twins (one line per seed)")
        y = alt.Y("value:Q", title=number, scale=alt.Scale(zero=False))
        tooltip = ["model", "blocks", alt.Tooltip("value:Q", format=".3f"), alt.Tooltip("low:Q", format=".3f"),
                   alt.Tooltip("high:Q", format=".3f")]
        layers = [alt.Chart(twins).mark_line(color="#999", strokeWidth=1).encode(
                      x=x, y=y, detail="group:N", strokeDash=kind),
                  alt.Chart(twins).mark_point(color="#999", filled=False, size=40).encode(x=x, y=y, tooltip=tooltip),
                  alt.Chart(trained).mark_rule(color="#1f77b4").encode(x=x, y="low:Q", y2="high:Q"),
                  alt.Chart(trained).mark_line(color="#1f77b4").encode(x=x, y=y, strokeDash=kind),
                  alt.Chart(trained).mark_point(color="#1f77b4", filled=True, size=60, opacity=1).encode(
                      x=x, y=y, tooltip=tooltip)]
        if number.startswith("late/early"):
            layers.append(_hline(1.0, "1: no change"))
        panels.append(alt.layer(*layers).properties(width=width, height=height))
    return _configure(alt.vconcat(*panels, spacing=16).resolve_scale(y="independent"), legend_below=True)
