"""One sweep cell's work, the same under every executor (``sweep.execute`` runs it in the driver, the Ray executor in
a worker): compress the cell's variant into the run dir unless a complete one made with its spec is there, evaluate
it (perplexity against dense's distributions, ``DENSE_DISTRIBUTIONS`` in the run dir, when the sweep wrote them),
return the scores. Touches no store; the variant helpers it needs live here too, so neither executor imports the
other's module.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from kick_hub.io import dumps, loads

if TYPE_CHECKING:
    from kick_hub.bench.config import SweepConfig
    from kick_hub.bench.plan import Cell


DENSE_DISTRIBUTIONS = "dense_distributions.safetensors"  # dense's next-token distributions, once per run (sweep)


def dense_distributions(run_dir: str | Path) -> Path:
    """Where a sweep keeps dense's next-token distributions on the perplexity texts (``scoring.fidelity``'s
    reference, written by ``sweep._reference``): ``run_dir/dense_distributions.safetensors``."""
    return Path(run_dir) / DENSE_DISTRIBUTIONS


def variant_dir(run_dir: str | Path, label: str) -> Path:
    """Where the sweep keeps the compressed variant of a cell: ``run_dir/variants/<label>``."""
    return Path(run_dir) / "variants" / label


def cached_manifest(vdir: Path, spec) -> dict | None:
    """The manifest of a complete variant in ``vdir`` made with ``spec``, or None (missing, partial, other spec)."""
    from kick_hub.variant import MANIFEST, load_manifest

    if not (vdir / MANIFEST).exists():  # variants are written atomically: a manifest means complete
        return None
    manifest = load_manifest(vdir)
    return manifest if manifest.get("spec") == loads(dumps(spec.to_dict())) else None


def remove_variant(run_dir: str | Path, label: str) -> bool:
    """Delete the variant of ``label`` from the run dir: renamed aside first (so its directory, and the manifest
    that marks it complete, go in one step), then removed. True when there was one."""
    vdir = variant_dir(run_dir, label)
    if not vdir.exists():
        return False
    gone = vdir.parent / f".deleted-{label}-{time.time_ns()}"
    os.replace(vdir, gone)
    shutil.rmtree(gone, ignore_errors=True)
    try:  # the last one takes ``variants/`` with it
        vdir.parent.rmdir()
    except OSError:
        pass
    return True


def run_cell(config: "SweepConfig", cell: "Cell", tasks: list[str], delete_variant: bool = False,
             log: Callable[[str], None] | None = None) -> dict:
    """One cell's work under ``config`` (its model, run dir, data, limit, protocol, judge, calibration, batch size,
    placement, progress, mcq protocols): compress ``cell`` into ``variant_dir`` unless a complete variant made with
    its spec is there (a missing or partial one is rebuilt), evaluate it on ``tasks`` (a task without data is
    skipped when the sweep has several) and, with ``delete_variant``, remove the variant afterwards. Touches no
    store. With perplexity among ``tasks`` and dense's distributions in the run dir (``dense_distributions``, read
    from the path: a Ray worker loads the file, nothing large is sent), the cell's perplexity also measures
    distribution fidelity against them (``tasks.perplexity.run``'s ``reference``). ``log`` (a callable taking a
    line) reports the phases. Returns ``{"label", "path", "manifest", "results",
    "samples", "skipped", "seconds", "host"}``: ``path`` the evaluated model (the base model's for dense),
    ``manifest`` the variant's (None for dense), ``results`` / ``samples`` / ``skipped`` as
    ``evaluation.evaluate`` gives them, ``seconds`` compress + evaluate wall time."""
    from kick_hub.backends import make_engine
    from kick_hub.compress import make_variant
    from kick_hub.evaluation import evaluate, invalid_tasks
    from kick_hub.models import resolve as resolve_model
    from kick_hub.variant import load_manifest

    c = config
    start = time.perf_counter()
    say = log or (lambda line: None)
    if cell.source is not None:  # an external checkpoint: evaluated as it is, its provenance as its manifest
        from kick_hub.external import provenance

        say("measuring the checkpoint")
        path, manifest = cell.source.model, provenance(cell.source)
    elif cell.spec is None:
        path, manifest = resolve_model(c.model), None
    else:
        vdir = variant_dir(c.run_dir, cell.label)
        manifest = cached_manifest(vdir, cell.spec)
        if manifest is None:
            say("compressing")
            make_variant(c.model, cell.spec, vdir, c.calibration, c.nsamples, c.seqlen, overwrite=True,
                         progress=c.progress, placement=c.placement)
            manifest = load_manifest(vdir)
        path = str(vdir)
    say(f"evaluating {', '.join(tasks)}")
    options = {}
    if "perplexity" in tasks and dense_distributions(c.run_dir).exists():
        from kick_hub.scoring.fidelity import load_reference

        options["perplexity"] = {"reference": load_reference(dense_distributions(c.run_dir))}
    engine = make_engine(path, placement=c.placement, batch_size=c.batch_size)
    out = evaluate(engine, list(tasks), c.data, c.limit, c.protocol, c.judge, model_name=cell.label,
                   skip_missing=len(c.tasks) > 1, mcq_protocols=c.protocols, task_options=options)
    del engine
    for task, why in invalid_tasks(out["results"]).items():  # NaN / inf logits: stored, reported as invalid
        say(f"{task} is invalid: {why}")
    if delete_variant and cell.spec is not None:
        remove_variant(c.run_dir, cell.label)
    seconds = time.perf_counter() - start
    say(f"done in {seconds:.1f} s")
    return {"label": cell.label, "path": path, "manifest": manifest, "results": out["results"],
            "samples": out["samples"], "skipped": out["config"]["skipped"], "seconds": seconds,
            "host": socket.gethostname()}
