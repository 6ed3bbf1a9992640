"""Sweep results as a Hub dataset repo: one JSON file per run, as the Open LLM Leaderboard keeps its results
(``results/<model>/results_<time>.json``), read back with ``datasets`` for the Space's leaderboard.

Each file holds ``config`` (model, data, limit, protocol, versions, the run's id), ``results`` (variant -> task ->
metric -> value, lm-evaluation-harness style) and ``rows``: one flat row per variant with every task's headline value,
its value relative to dense and the knowledge-collapse flag, always with the same columns so files concatenate.

One file per run: a run dir's results are a run with a stable id (``Store.run_identity``: from the store's creation
record, not a path, so the same after a resume and wherever the run dir is), the file is
``results/<model>/run_<id>.json`` and every row carries the id in ``run``. Pushing a resumed run again replaces its
file, so the dataset holds one row per variant of a run, and rows of different runs differ in ``run``.

Published files name the model and data source by ``kick_hub.io.public_name`` (never a path of the machine the
sweep ran on) and are strict JSON (``kick_hub.io.dumps``): a non-finite score is ``null`` in its column and listed
under the top-level ``non_finite`` key, so ``datasets`` still reads ``rows`` as numeric columns.
"""

from __future__ import annotations

import time
from pathlib import Path

from kick_hub.hub import check_repo_id, ensure_repo, hub_errors, token
from kick_hub.io import dumps, public_name

ROW_FIELDS = ("model", "variant", "method", "sparsity", "pattern", "bits", "data", "run")


def run_record(run_dir: str | Path) -> tuple[str, dict]:
    """(path in the dataset repo, record) for a run dir's results store: ``results/<model>/run_<run id>.json``, the
    same path for every push of the run (``Store.run_identity``); reads the store only (read-only media too)."""
    from kick_hub import tasks
    from kick_hub.bench import analysis
    from kick_hub.bench.store import Store
    from kick_hub import versions

    store = Store.open_readonly(run_dir)
    try:
        rows, _ = analysis.table_data(store)
        meta, scores, run = store.meta(), store.scores(), store.run_identity()
        finished = store.db.execute("SELECT MAX(finished) FROM variants").fetchone()[0]
    finally:
        store.close()
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.gmtime(finished))
    model, data = public_name(store.model), public_name(meta.get("data", "world"))
    flat = []
    for row in rows:
        out = {"model": model, "variant": row["label"], "method": row["method"], "sparsity": row["sparsity"],
               "pattern": row["pattern"], "bits": row["bits"], "data": data, "run": run}
        for task in tasks.TASK_NAMES:
            out[task] = row["abs"].get(task)
            out[f"{task}_rel"] = row["rel"].get(task)
        out["knowledge_rel"] = analysis.knowledge(row)
        out["knowledge_collapse"] = analysis.knowledge_collapse(row) is not None
        flat.append(out)
    record = {"config": {"model": model, "data": public_name(meta.get("data")), "limit": meta.get("limit"),
                         "protocol": meta.get("protocol"), "batch_size": meta.get("batch_size"),
                         "calibration": public_name(meta.get("calibration")), "nsamples": meta.get("nsamples"),
                         "seqlen": meta.get("seqlen"), "judge": _public_judges(meta.get("judge")), "versions": versions(),
                         "run": run, "finished": stamp},
              "results": scores, "rows": flat}
    # one file per run (named by its id): a later push of the same run, resumed or not, replaces it
    return f"results/{model}/run_{run}.json", record


def _public_judges(judges: dict | None) -> dict | None:
    """task -> judge name (``BACKEND:MODEL``) with a local judge model's path reduced to its directory name."""
    if not judges:
        return judges
    out = {}
    for task, judge in judges.items():
        backend, _, model = str(judge).partition(":")
        out[task] = f"{backend}:{public_name(model)}" if model else public_name(backend)
    return out


def push_results(run_dir: str | Path, repo_id: str, private: bool = False) -> str:
    """Add this run's JSON to the dataset repo ``repo_id`` (created if needed), replacing the file an earlier push
    of the same run wrote; returns the path in the repo."""
    from huggingface_hub import CommitOperationAdd, HfApi

    check_repo_id(repo_id, "results-repo")
    path, record = run_record(run_dir)
    secret = token()
    api = HfApi()
    data = (dumps(record, indent=2) + "\n").encode()
    with hub_errors(f"pushing results of {run_dir} to the dataset {repo_id}",
                    "The dataset stays at its previous commit; re-run to retry.", secret):
        ensure_repo(api, repo_id, "dataset", private, secret)
        api.create_commit(repo_id, [CommitOperationAdd(path_in_repo=path, path_or_fileobj=data)],
                          repo_type="dataset", commit_message=f"kick-hub results: {path}")
    return path


def row_features():
    """The ``datasets.Features`` of ``rows``: given when loading, so a column that is ``null`` in every row of one
    file (a task not run, a non-finite score) still concatenates with numbers from another file."""
    from datasets import Features, Value

    from kick_hub import tasks

    cols = {"model": "string", "variant": "string", "method": "string", "sparsity": "float64", "pattern": "string",
            "bits": "int64", "data": "string", "run": "string"}
    for task in tasks.TASK_NAMES:
        cols.update({task: "float64", f"{task}_rel": "float64"})
    cols.update({"knowledge_rel": "float64", "knowledge_collapse": "bool"})
    return Features({k: Value(v) for k, v in cols.items()})


def _non_finite_rows(files: list[str]) -> dict[int, dict[str, float]]:
    """row index in the loaded dataset -> {column: inf / -inf / nan} from each file's ``non_finite`` map."""
    import json

    from kick_hub.io import NON_FINITE_KEY

    fixes: dict[int, dict[str, float]] = {}
    offset = 0
    for file in files:
        doc = json.loads(Path(file).read_text(encoding="utf-8"))
        for pointer, text in (doc.get(NON_FINITE_KEY) or {}).items():
            parts = pointer.split("/")
            if len(parts) == 4 and parts[1] == "rows" and parts[2].isdigit():
                column = parts[3].replace("~1", "/").replace("~0", "~")
                fixes.setdefault(offset + int(parts[2]), {})[column] = float(text)
        offset += len(doc.get("rows", []))
    return fixes


def load_results(repo_id: str, revision: str | None = None):
    """Every run's rows of a results dataset repo as one ``datasets.Dataset`` (with ``row_features``); scores
    written as ``null`` because they were not finite are put back as ``inf`` / ``-inf`` / ``nan``."""
    import datasets
    from huggingface_hub import snapshot_download

    check_repo_id(repo_id, "results-repo")
    with hub_errors(f"downloading the results dataset {repo_id}", "Nothing was changed."):
        local = Path(snapshot_download(repo_id, repo_type="dataset", revision=revision,
                                       allow_patterns=["results/**/*.json", "results/*.json"]))
    files = sorted(str(p) for p in local.glob("results/**/*.json"))
    if not files:
        raise ValueError(f"results-repo: {repo_id} holds no results/**/*.json files")
    dataset = datasets.load_dataset("json", data_files=files, field="rows", split="train", features=row_features())
    fixes = _non_finite_rows(files)
    if not fixes:
        return dataset
    frame = dataset.to_pandas()
    for i, values in fixes.items():
        for column, value in values.items():
            if column in frame:
                frame[column] = frame[column].astype("float64")
                frame.loc[i, column] = value
    return datasets.Dataset.from_pandas(frame, features=dataset.features, preserve_index=False)
