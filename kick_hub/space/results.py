"""The Results tab's sweep tables and figures of a run dir: the report's own (``bench.report``,
``bench.plots``)."""

from __future__ import annotations

from pathlib import Path

from kick_hub.bench.store import FILENAME


def results_sections(run_dir: str | Path | None) -> dict[str, tuple[str, list[str], list[list[str]]]]:
    """The report's own tables of a run dir (``bench.report.sections``: the same cells, significance marks and
    notes as report.md), title -> (note, header, rows of cells); empty without a run dir."""
    from kick_hub.bench import analysis, report

    if not run_dir or not (Path(run_dir) / FILENAME).exists():
        return {}
    rows, dense = _table_data(run_dir)
    names = [t for t in analysis.HEADLINE if t in dense]
    losses, significant = analysis.first_loss(rows, names), analysis.first_significant_loss(rows, names)
    return {title: (note, header, body) for title, note, header, body
            in report.sections(rows, dense, losses, significant)}


SCORES = "Scores"  # the title of the report's score table (``bench.report.sections``)
# the report's tables the Results tab shows below the scores (title -> element id)
BEYOND_ACCURACY = {"Flips against dense": "flips", "mcq-reasoning: recognition vs generation": "recognition",
                   "Distribution fidelity": "fidelity"}


def results_frame(run_dir: str | Path | None):
    """The sweep table as a DataFrame: the report's score table (``results_sections``), one row per variant and one
    column per task, each cell ``absolute ± standard error (relative to dense, * where the paired 95 % interval
    against dense excludes 0)``; empty without a run dir."""
    import pandas as pd

    sections = results_sections(run_dir)
    if SCORES not in sections:
        return pd.DataFrame()
    _, header, body = sections[SCORES]
    return pd.DataFrame(body, columns=header)


def sweep_figures(run_dir: str | Path | None) -> dict[str, object]:
    """The sweep report's figures of a run dir (``bench.plots.figures``: file name -> matplotlib Figure, the same
    drawing as its sparsity.png and nm_quant.png); empty without a run dir. Close each with ``close_figure``."""
    from kick_hub.bench import plots

    if not run_dir or not (Path(run_dir) / FILENAME).exists():
        return {}
    return plots.figures(_table_data(run_dir)[0])


def _table_data(run_dir: str | Path) -> tuple[list[dict], dict]:
    """``bench.analysis.table_data`` of the run dir's store, opened read-only."""
    from kick_hub.bench import analysis
    from kick_hub.bench.store import Store

    store = Store.open_readonly(run_dir)
    try:
        return analysis.table_data(store)
    finally:
        store.close()


def close_figure(fig) -> None:
    """Free a matplotlib figure once gradio has drawn it (``gr.Plot`` encodes it when built)."""
    import matplotlib.pyplot as plt

    plt.close(fig)
