"""The sweep report's plots, drawn from ``bench.analysis.table_data``'s rows: ``figures`` (file name -> matplotlib
Figure) for report.md / report.html (``plot`` saves them as PNG files) and the Space, which shows the same
figures.

Each relative score is drawn with its paired 95 % interval against dense (``stats.Paired.rel_low`` /
``rel_high``) as a band or an error bar; every task keeps one colour (``TASK_COLOURS``) in every plot.
matplotlib is imported on first use.
"""

from __future__ import annotations

import math
from pathlib import Path

from kick_hub import tasks
from kick_hub.bench.analysis import HEADLINE, KNOWLEDGE, LOSS, unstructured


def _band(row: dict, task: str) -> tuple[float, float]:
    """The paired 95 % interval of a row's relative score on ``task`` (NaN, NaN without one; dense: 1, 1)."""
    if row.get("method") == "dense" or "label" not in row:
        return (1.0, 1.0) if task in row["rel"] else (math.nan, math.nan)
    p = row.get("paired", {}).get(task)
    if p is None or p.rel_low is None or task not in row["rel"]:
        return math.nan, math.nan
    return p.rel_low, p.rel_high


# matplotlib's default colours ("tab10"), one per task in declaration order (``HEADLINE``), so a task has the same
# colour in every plot, whichever tasks a sweep ran, and in the Space (which shows these figures)
TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
TASK_COLOURS = {t: TAB10[i % len(TAB10)] for i, t in enumerate(HEADLINE)}


def _task_label(task: str) -> str:
    return task + " (dense / variant)" if tasks.SPECS[task].lower_is_better else task


def figures(rows: list[dict]) -> dict[str, object]:
    """The report's plots as matplotlib figures, file name -> Figure (the caller saves or shows and closes them):

    - ``sparsity.png``: relative score vs sparsity, one panel per unstructured pruning method (dense is the 0 %
      point), a marker per variant, each point's paired 95 % interval as a band, perplexity dashed (as dense /
      variant), the 0.95-of-dense line labelled; present when the sweep has unstructured pruning variants;
    - ``nm_quant.png``: bars with the same intervals as error bars for the N:M and quantized variants, titled by
      what the sweep has; present when it has any;
    - ``signals.png``: knowledge retained against each signal of distance from dense (``bench.signals.figure``),
      one panel per signal with its Spearman rho and interval; present when a signal has 2 variants or more.

    Legends sit below the axes, never over the data; every task has its ``TASK_COLOURS`` colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, object] = {}
    pruning = sorted({r["method"] for r in rows if r["pattern"] is None and r["sparsity"] is not None})
    names = [t for t in HEADLINE if any(t in r["rel"] for r in rows)]
    if pruning:
        fig, axes = plt.subplots(1, len(pruning), figsize=(5 * len(pruning), 4.6), sharey=True, squeeze=False,
                                 layout="constrained")
        for ax, m in zip(axes[0], pruning):
            pts = [{"sparsity": 0.0, "rel": {t: 1.0 for t in names}}] + unstructured(rows, m)
            for t in names:
                xs = [p["sparsity"] * 100 for p in pts]
                ax.plot(xs, [p["rel"].get(t, float("nan")) for p in pts], marker="o", markersize=4,
                        linestyle="--" if tasks.SPECS[t].lower_is_better else "-",
                        linewidth=2.5 if t in KNOWLEDGE else 1.5, color=TASK_COLOURS[t], label=_task_label(t))
                band = [_band(p, t) for p in pts]  # the paired 95 % interval of each point (dense: exact 1)
                ax.fill_between(xs, [b[0] for b in band], [b[1] for b in band], color=TASK_COLOURS[t], alpha=0.15,
                                linewidth=0)
            ax.axhline(1 - LOSS, color="grey", linewidth=1, linestyle=":", label=f"{1 - LOSS:.2f} of dense "
                       f"(a {LOSS:.0%} loss)")
            ax.set_title(m)
            ax.set_xlabel("sparsity (%)")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("score relative to dense")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 3), fontsize=8, frameon=False)
        fig.suptitle("Task scores relative to dense vs sparsity\n(bands: paired 95 % intervals)", fontsize=10)
        out["sparsity.png"] = fig
    others = [r for r in rows if r["pattern"] is not None or r["bits"] is not None]
    if others:
        import numpy as np

        fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(others)), 4.6), layout="constrained")
        width = 0.8 / max(len(names), 1)
        x = np.arange(len(others))
        for i, t in enumerate(names):
            heights = [r["rel"].get(t, float("nan")) for r in others]
            band = [_band(r, t) for r in others]
            err = [[max(h - b[0], 0) if math.isfinite(b[0]) else 0 for h, b in zip(heights, band)],
                   [max(b[1] - h, 0) if math.isfinite(b[1]) else 0 for h, b in zip(heights, band)]]
            ax.bar(x + i * width, heights, width, label=_task_label(t), yerr=err, capsize=2, color=TASK_COLOURS[t],
                   error_kw={"linewidth": 0.8})
        ax.set_xticks(x + width * (len(names) - 1) / 2, [r["label"] for r in others], rotation=30, ha="right")
        ax.axhline(1.0, color="black", linewidth=0.8, label="dense")
        ax.set_ylabel("score relative to dense")
        kinds = [k for k, has in (("N:M sparsity", any(r["pattern"] is not None for r in others)),
                                  ("quantization", any(r["bits"] is not None for r in others))) if has]
        ax.set_title(f"{' and '.join(kinds)}: scores relative to dense\n(error bars: paired 95 % intervals)",
                     fontsize=10)
        handles, labels = ax.get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 3), fontsize=8, frameon=False)
        out["nm_quant.png"] = fig
    from kick_hub.bench import signals

    fig = signals.figure(signals.analyse(rows))  # knowledge retained vs each signal, rho in each panel's title
    if fig is not None:
        out["signals.png"] = fig
    return out


def plot(rows: list[dict], out_dir: Path) -> list[str]:
    """Save ``figures`` as PNG files in ``out_dir`` (110 dpi; each through a temp file, ``io.atomic_path``) and
    return their names."""
    import matplotlib.pyplot as plt

    from kick_hub.io import atomic_path

    files = []
    for name, fig in figures(rows).items():
        with atomic_path(out_dir / name) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        files.append(name)
    return files
