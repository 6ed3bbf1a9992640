"""The Leaderboard tab: one row per variant, from a results dataset repo or the run dir's store
(``hub.results``)."""

from __future__ import annotations

from pathlib import Path

from kick_hub import tasks
from kick_hub.bench.store import FILENAME
from kick_hub.space.tables import display_frame

LEADERBOARD_HEADERS = {"sparsity": "sparsity %", "pattern": "N:M", "knowledge_rel": "knowledge kept",
                       "perplexity_rel": "perplexity kept", "knowledge_collapse": "knowledge collapsed"}
METRIC_WORDS = {"exact_match": "exact match", "rougeL": "ROUGE-L"}


def task_header(task: str) -> str:
    """A task's column header: the task and its headline metric in words (``factoid-qa exact match``)."""
    metric = tasks.SPECS[task].metric
    return task if metric == task else f"{task} {METRIC_WORDS.get(metric, metric.replace('_', ' '))}"


def leaderboard_frame(run_dir: str | Path | None, results_repo: str | None = None):
    """Leaderboard rows from a results dataset repo or, without one, the run dir's store (one row per variant of a
    run; a ``run`` column, the run's id, when rows of several runs are shown); best knowledge first, under human
    headers (``LEADERBOARD_HEADERS``, ``task_header``), sparsity in whole percent, scores to 2
    decimals."""
    import pandas as pd

    from kick_hub.hub import results

    if results_repo:
        frame = results.load_results(results_repo).to_pandas()
    elif run_dir and (Path(run_dir) / FILENAME).exists():
        frame = pd.DataFrame(results.run_record(run_dir)[1]["rows"])
    else:
        return pd.DataFrame()
    runs = ["run"] if "run" in frame and frame["run"].nunique() > 1 else []  # rows of several runs: which is which
    keep = ["variant", "model", "method", "sparsity", "pattern", "bits", *runs, "knowledge_rel", "perplexity_rel",
            "knowledge_collapse", *[t for t in tasks.TASK_NAMES if t in frame and frame[t].notna().any()]]
    # a column no variant has a value in (N:M or bits in a sweep without such variants) is left out
    frame = frame[[c for c in keep if c in frame and (c not in ("pattern", "bits") or frame[c].notna().any())]]
    frame = frame.sort_values("knowledge_rel", ascending=False, na_position="last")
    def whole(column, scale=1):  # no "4.0" bits, no "0.5" sparsity: whole numbers, None where missing
        return pd.Series([None if pd.isna(v) else int(round(v * scale)) for v in column], index=column.index,
                         dtype=object)

    if "sparsity" in frame:
        frame["sparsity"] = whole(frame["sparsity"], 100)
    if "bits" in frame:
        frame["bits"] = whole(frame["bits"])
    if "knowledge_collapse" in frame:
        frame["knowledge_collapse"] = frame["knowledge_collapse"].map(lambda v: "yes" if v is True else "no")
    frame = frame.round(2).rename(columns={**LEADERBOARD_HEADERS, **{t: task_header(t) for t in tasks.TASK_NAMES}})
    return display_frame(frame.reset_index(drop=True))
