"""Report tables -> altair charts (the CHARTS registry, one drawing per table name), saved as PNG, SVG and HTML."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from expertlab.registry import Registry
from expertlab.report.execute import Table

# table name -> function drawing that table (an altair chart); saved as <table>.png, .svg and .html.
Chart = Callable[[Table], Any]
CHARTS: Registry[Chart] = Registry("chart")


def _ratio_lines(
    records: list[dict[str, Any]],
    *,
    title: str,
    y_title: str,
    column: str,
    baseline: float | str | None = None,
    percent: bool = False,
    shared_y: bool = True,
) -> Any:
    """A value vs pruning ratio, one line per criterion with a band from `low` to `high`, one chart per
    (`panel`, `column`) pair that has data: a row per panel, its columns side by side (a sparse grid is
    drawn as concatenated charts, not a facet, which would place panels by position); `baseline` is a
    constant or a field (the source model's value), drawn dashed."""
    import altair as alt

    # rows arrive in the queries' order (criteria as registered): keep it
    criteria = list(dict.fromkeys(r["criterion"] for r in records))
    panels = list(dict.fromkeys(r["panel"] for r in records))
    x = alt.X("ratio:Q", title="pruning ratio", axis=alt.Axis(format="%"))
    y_axis = alt.Axis(format="%") if percent else alt.Axis()
    color = alt.Color("criterion:N", sort=criteria, title="criterion")
    band = alt.Chart().mark_area(opacity=0.2).encode(x=x, y="low:Q", y2="high:Q", color=color)
    line = (
        alt.Chart()
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("value:Q", title=y_title, axis=y_axis),
            color=color,
            tooltip=["criterion:N", "ratio:Q", alt.Tooltip("value:Q", format=".3f"), "n:Q"],
        )
    )
    layers = [band, line]
    if isinstance(baseline, str):
        layers.append(
            alt.Chart()
            .mark_rule(strokeDash=[4, 4], color="gray")
            .encode(y=f"mean({baseline}):Q")
            .transform_filter(f"datum.{baseline} != null")
        )
    elif baseline is not None:
        layers.append(alt.Chart().mark_rule(strokeDash=[4, 4], color="gray").encode(y=alt.datum(baseline)))
    rows = []
    for panel in panels:
        in_panel = [r for r in records if r["panel"] == panel]
        cells = []
        for value in dict.fromkeys(r[column] for r in in_panel):
            data = [r for r in in_panel if r[column] == value]
            cells.append(
                alt.layer(*layers, data=alt.Data(values=data)).properties(
                    width=220, height=160, title=alt.TitleParams(f"{panel}: {value}", fontSize=11)
                )
            )
        rows.append(alt.hconcat(*cells).resolve_scale(y="shared" if shared_y else "independent"))
    chart = alt.vconcat(*rows).properties(title=title)
    chart = chart.resolve_scale(y="shared" if shared_y else "independent", color="shared")
    return chart.configure_legend(symbolOpacity=1)  # the legend shares the bands' symbols: draw them opaque


def _over_seeds(table: Table, panel: tuple[str, ...], column: str, value: str, *extra: str) -> list[dict[str, Any]]:
    """_ratio_lines records from a table of `<value>_mean` and `<value>_sd` over `n_seeds` seeds: the panel
    named by the `panel` columns, the band mean ± sd, the `extra` columns as they are."""
    records = []
    for row in table.records():
        mean, sd = row[f"{value}_mean"], row[f"{value}_sd"] or 0.0
        records.append(
            {
                "panel": " / ".join(f"{row[name]}" for name in panel),
                column: row[column],
                "criterion": row["criterion"],
                "ratio": row["ratio"],
                "n": row["n_seeds"],
                **{name: row[name] for name in extra},
                "value": mean,
                "low": mean - sd,
                "high": mean + sd,
            }
        )
    return records


@CHARTS.register("utility_retention")
def utility_retention_chart(table: Table) -> Any:
    """Figure 2: retention vs pruning ratio, one line per criterion, sd band, columns = domains, rows = model x kind."""
    records = _over_seeds(table, ("model", "calibration", "kind"), "domain", "retention")
    return _ratio_lines(
        records,
        title="Utility retention vs pruning ratio (mean ± sd over seeds)",
        y_title="utility retention (source = 100%)",
        column="domain",
        baseline=1,
        percent=True,
    )


@CHARTS.register("reliability_scores")
def reliability_scores_chart(table: Table) -> Any:
    """Figures 4 and 7: each reliability metric vs pruning ratio, sd band, the source model dashed."""
    records = _over_seeds(table, ("model", "calibration", "task"), "metric", "value", "source_value")
    return _ratio_lines(
        records,
        title="Reliability metrics vs pruning ratio (mean ± sd over seeds; dashed: the source model)",
        y_title="value",
        column="metric",
        baseline="source_value",
        shared_y=False,
    )


@CHARTS.register("judge_rates")
def judge_rates_chart(table: Table) -> Any:
    """Figures 3 and 6: judged rate vs pruning ratio, one line per criterion (mean over judges, band: their
    range), dashed: the source model's absolute rate, or 0.5 (no preference) for the relative questions;
    columns = questions, rows = model x calibration x task."""
    cells: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in table.records():
        if row["rate"] is not None:
            key = (row["model"], row["calibration"], row["task"], row["question"], row["criterion"], row["ratio"])
            cells.setdefault(key, []).append(row)
    records = []
    for (model, calibration, task, question, criterion, ratio), rows in cells.items():
        rates = [r["rate"] for r in rows]
        sources = [r["source_rate"] for r in rows if r["source_rate"] is not None]
        records.append(
            {
                "panel": f"{model} / {calibration or 'imported'} / {task}",
                "question": question,
                "criterion": criterion,
                "ratio": ratio,
                "n": len(rows),
                "value": sum(rates) / len(rates),
                "low": min(rates),
                "high": max(rates),
                # dashed: the source model's rate (absolute), the no-preference line (relative)
                "baseline": (sum(sources) / len(sources) if sources else None) if question == "hallucinated" else 0.5,
            }
        )
    return _ratio_lines(
        records,
        title="Judged rates vs pruning ratio (mean over judges, band: their range; dashed: source model / 0.5)",
        y_title="share of items",
        column="question",
        baseline="baseline",
        percent=True,
    )


@CHARTS.register("expert_overlap")
def expert_overlap_chart(table: Table) -> Any:
    """Which criteria keep the same experts: overlap per criterion pair, one heatmap per model x calibration x ratio."""
    import altair as alt

    records = [{**row, "panel": f"{row['model']} / {row['calibration']} / {row['ratio']:g}"} for row in table.records()]
    criteria = list(dict.fromkeys([r["criterion_a"] for r in records] + [r["criterion_b"] for r in records]))
    base = alt.Chart().encode(
        x=alt.X("criterion_a:N", sort=criteria, title=None),
        y=alt.Y("criterion_b:N", sort=criteria, title=None),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("overlap:Q", scale=alt.Scale(domain=[0, 1], scheme="blues")),
        tooltip=["criterion_a:N", "criterion_b:N", alt.Tooltip("overlap:Q", format=".3f"), "n_seed_pairs:Q"],
    )
    labels = base.mark_text(fontSize=10).encode(text=alt.Text("overlap:Q", format=".2f"))
    return (
        alt.layer(cells, labels, data=alt.Data(values=records))
        .properties(width=180, height=180)
        .facet(facet=alt.Facet("panel:N", title=None), columns=3)
        .properties(title="Expert-selection overlap between criteria (mean over layers and seed pairs)")
    )


@CHARTS.register("expert_monosemanticity")
def expert_monosemanticity_chart(table: Table) -> Any:
    """How monosemantic the experts are (paper 001, Fig. 3): the distribution of EMS and of EDMS^(d), a panel each,
    a row per model x explainer x predictor x target domain."""
    import altair as alt

    records = [
        {"panel": f"{row['model']} / {row['explainer']} / {row['predictor']} / {row['domain']}",
         "score": "EMS" if name == "ems" else f"EDMS ({row['domain']})", "value": row[name]}
        for row in table.records() for name in ("ems", "edms") if row[name] is not None
    ]  # fmt: skip
    return (
        alt.Chart(alt.Data(values=records))
        .mark_bar()
        .encode(
            x=alt.X("value:Q", bin=alt.Bin(extent=[0, 1], step=0.1), title="prediction accuracy"),
            y=alt.Y("count():Q", title="experts"),
            column=alt.Column("score:N", title=None, sort=["EMS"]),
            row=alt.Row("panel:N", title=None),
        )
        .properties(width=220, height=140, title="Expert monosemanticity: EMS and EDMS over the experts")
    )


@CHARTS.register("layer_monosemanticity")
def layer_monosemanticity_chart(table: Table) -> Any:
    """Monosemanticity across depth (paper 001, Fig. 2b, 8): LDS and LDDS^(d) per layer, a line per explainer."""
    import altair as alt

    records = [
        {"panel": f"{row['model']} / {row['domain']}", "explainer": f"{row['explainer']} / {row['predictor']}",
         "layer": row["layer"], "score": score, "value": row[name]}
        for row in table.records() for name, score in (("lds", "LDS"), ("ldds", "LDDS")) if row[name] is not None
    ]  # fmt: skip
    return (
        alt.Chart(alt.Data(values=records))
        .mark_line(point=True)
        .encode(
            x=alt.X("layer:O", title="MoE layer"),
            y=alt.Y("value:Q", scale=alt.Scale(domain=[0, 1]), title="mean prediction accuracy"),
            color=alt.Color("explainer:N", title="explainer / predictor"),
            column=alt.Column("score:N", title=None, sort=["LDS", "LDDS"]),
            row=alt.Row("panel:N", title=None),
        )
        .properties(width=220, height=160, title="Layer-wise decoupling: LDS and LDDS by depth")
    )


@CHARTS.register("top_k_monosemanticity")
def top_k_monosemanticity_chart(table: Table) -> Any:
    """Sparsity against monosemanticity (paper 001, Fig. 2a): LDS per top-k, a line per layer."""
    import altair as alt

    records = [
        {"panel": f"{row['model']} / {row['explainer']} / {row['predictor']}", "layer": f"layer {row['layer']}",
         "top_k": row["top_k"], "lds": row["lds"]}
        for row in table.records()
    ]  # fmt: skip
    return (
        alt.Chart(alt.Data(values=records))
        .mark_line(point=True)
        .encode(
            x=alt.X("top_k:O", title="activated experts per token (top-k)"),
            y=alt.Y("lds:Q", scale=alt.Scale(domain=[0, 1]), title="LDS (mean EMS)"),
            color=alt.Color("layer:N", title=None),
            column=alt.Column("panel:N", title=None),
        )
        .properties(width=240, height=180, title="Sparsity and monosemanticity: LDS by top-k")
    )


@CHARTS.register("finetune_task_scores")
def finetune_task_scores_chart(table: Table) -> Any:
    """Fine-tuning strategies side by side (paper 001, Figs. 4-7): each utility task's score per strategy, mean over
    seeds, the in-domain tasks first."""
    import altair as alt

    records = [
        {"panel": f"{row['model']} / {'in domain' if row['in_domain'] else 'out of domain'}", "task": row["task"],
         "strategy": row["strategy"], "value": row["score_mean"]}
        for row in table.records() if row["score_mean"] is not None
    ]  # fmt: skip
    return (
        alt.Chart(alt.Data(values=records))
        .mark_bar()
        .encode(
            x=alt.X("strategy:N", title=None),
            y=alt.Y("value:Q", scale=alt.Scale(domain=[0, 1]), title="primary score (mean over seeds)"),
            color=alt.Color("strategy:N", title="strategy"),
            column=alt.Column("task:N", title=None),
            row=alt.Row("panel:N", title=None),
        )
        .properties(width=90, height=140, title="Fine-tuning strategies: in-domain and out-of-domain scores")
    )


# the files a chart is saved as (params: report.chart_formats): .html is a self-contained offline page
ChartFormat = Literal["png", "svg", "html"]
CHART_FORMATS: tuple[ChartFormat, ...] = get_args(ChartFormat)


def save_chart(chart: Any, out_dir: Path, name: str, formats: Sequence[ChartFormat] = CHART_FORMATS) -> tuple[str, list[str]]:
    """The chart as SVG, and saved as <name>.<format> for each of `formats`, all rendered by vl-convert;
    (the SVG, the file names)."""
    import vl_convert as vlc

    spec = chart.to_json()
    svg = vlc.vegalite_to_svg(spec)
    render = {
        "png": lambda path: path.write_bytes(vlc.vegalite_to_png(spec, scale=2)),
        "svg": lambda path: path.write_text(svg),
        "html": lambda path: path.write_text(vlc.vegalite_to_html(spec, bundle=True)),
    }
    for suffix in formats:
        render[suffix](out_dir / f"{name}.{suffix}")
    return svg, [f"{name}.{suffix}" for suffix in formats]
