"""Sweep results as a Hub dataset repo: one JSON file per run, as the Open LLM Leaderboard keeps its results
(``results/<model>/results_<time>.json``), read back with ``datasets`` for the Space's leaderboard.

Each file holds ``config`` (model, data, limit, protocol, versions), ``results`` (variant -> task -> metric -> value,
lm-evaluation-harness style) and ``rows``: one flat row per variant with every task's headline value, its value
relative to dense and the knowledge-collapse flag, always with the same columns so files concatenate.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from kick_hub.hub import check_repo_id, hub_errors, token

ROW_FIELDS = ("model", "variant", "method", "sparsity", "pattern", "bits", "data", "run")


def _model_path(model: str) -> str:
    return Path(model).name if Path(model).exists() or model.count("/") != 1 else model


def run_record(run_dir: str | Path) -> tuple[str, dict]:
    """(path in the dataset repo, record) for a run dir's results store."""
    from kick_hub import tasks
    from kick_hub.bench import report
    from kick_hub.bench.store import Store
    from kick_hub.evaluation import versions

    store = Store(run_dir, None)
    try:
        rows, _ = report.table_data(store)
        meta, scores = store.meta(), store.scores()
        finished = store.db.execute("SELECT MAX(finished) FROM variants").fetchone()[0]
    finally:
        store.close()
    # named after the last finished cell, so pushing an unchanged run again writes the same file
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.gmtime(finished))
    run = f"{_model_path(store.model)}/results_{stamp}"
    flat = []
    for row in rows:
        out = {"model": store.model, "variant": row["label"], "method": row["method"], "sparsity": row["sparsity"],
               "pattern": row["pattern"], "bits": row["bits"], "data": meta.get("data", "world"), "run": run}
        for task in tasks.TASK_NAMES:
            out[task] = row["abs"].get(task)
            out[f"{task}_rel"] = row["rel"].get(task)
        out["knowledge_rel"] = report.knowledge(row)
        out["knowledge_collapse"] = report.knowledge_collapse(row) is not None
        flat.append(out)
    record = {"config": {"model": store.model, "data": meta.get("data"), "limit": meta.get("limit"),
                         "protocol": meta.get("protocol"), "versions": versions(), "finished": stamp},
              "results": scores, "rows": flat}
    return f"results/{run}.json", record


def push_results(run_dir: str | Path, repo_id: str, private: bool = False) -> str:
    """Add this run's JSON to the dataset repo ``repo_id`` (created if needed); returns the path in the repo."""
    from huggingface_hub import CommitOperationAdd, HfApi

    check_repo_id(repo_id, "results-repo")
    path, record = run_record(run_dir)
    secret = token()
    api = HfApi()
    data = (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode()
    with hub_errors(f"pushing results of {run_dir} to the dataset {repo_id}",
                    "The dataset stays at its previous commit; re-run to retry.", secret):
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.create_commit(repo_id, [CommitOperationAdd(path_in_repo=path, path_or_fileobj=data)],
                          repo_type="dataset", commit_message=f"kick-hub results: {path}")
    return path


def load_results(repo_id: str, revision: str | None = None):
    """Every run's rows of a results dataset repo as one ``datasets.Dataset``."""
    import datasets
    from huggingface_hub import snapshot_download

    check_repo_id(repo_id, "results-repo")
    with hub_errors(f"downloading the results dataset {repo_id}", "Nothing was changed."):
        local = Path(snapshot_download(repo_id, repo_type="dataset", revision=revision,
                                       allow_patterns=["results/**/*.json", "results/*.json"]))
    files = sorted(str(p) for p in local.glob("results/**/*.json"))
    if not files:
        raise ValueError(f"results-repo: {repo_id} holds no results/**/*.json files")
    return datasets.load_dataset("json", data_files=files, field="rows", split="train")
