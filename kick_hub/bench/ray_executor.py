"""``kick bench --executor ray``: every unfinished cell of a sweep as a Ray task, committed by the driver.

The driver (``sweep.execute``, holding the run dir's lock) connects to a Ray cluster (``session``), checks that a
node can give a cell the resources asked for (``--cell-cpus`` / ``--cell-gpus``) before anything is scheduled, and
submits one task per cell (``ray.remote`` with ``num_cpus`` / ``num_gpus`` / ``max_retries``, named by the cell's
label, so Ray prefixes the cell's log lines with it). Each task gets the sweep's ``SweepConfig`` (put in the object
store once) and runs ``cell.run_cell``, the very function the local executor runs, and returns the cell's results;
the driver commits each into ``results.sqlite`` as it arrives (``ray.wait``), one transaction per cell. Workers
never open the store.

Faults: a worker that dies while its cell runs (process killed, node lost, out of memory) makes Ray run the cell
again, at most ``cell_retries`` times (``max_retries``); an exception raised by the cell's own work (a bad model, a full
disk) is not retried in that run (``retry_exceptions=False``: it would fail again the same way). Either way a cell
given up on is recorded in the store's ``failed`` table with its error and the sweep goes on; the next run of the
same command tries it again.

Variants: with ``--keep-variants none`` each worker deletes its variant once evaluated, so the run dir need not be
shared. Otherwise variants are written under the run dir, which must then be on storage every node sees: the driver
checks that it can read the manifest each worker reports, and fails the cell (naming that requirement) if not.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from kick_hub.bench.config import SweepConfig
    from kick_hub.bench.plan import Cell
    from kick_hub.bench.store import Store

INSTALL = 'pip install "kick-hub[ray]"'
CONNECT_TIMEOUT_S = 10.0  # how long a --ray-address HOST:PORT may take to accept a TCP connection
# environment a worker takes from the driver: offline mode and telemetry settings (never a token or a path)
FORWARD_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE",
               "HF_HUB_DISABLE_TELEMETRY", "TOKENIZERS_PARALLELISM", "RAY_USAGE_STATS_ENABLED")
# workers show no progress bars (the driver shows the cells bar): set before tqdm or transformers is imported there
QUIET_ENV = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def import_ray():
    """The ``ray`` module; ImportError (CLI exit 2) with the install command when it is not installed."""
    try:
        import ray
    except ImportError:
        raise ImportError(f"executor: --executor ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


def check_options(cell_cpus: float, cell_gpus: float, retries: int) -> None:
    """Refuse (ValueError) per-cell resources or retries that cannot be: ``cell_cpus`` > 0, ``cell_gpus`` >= 0,
    ``retries`` >= 0."""
    if not cell_cpus or cell_cpus <= 0:
        raise ValueError(f"cell-cpus: must be a positive number, got {cell_cpus}")
    if cell_gpus < 0:
        raise ValueError(f"cell-gpus: must be 0 or more, got {cell_gpus}")
    if retries < 0:
        raise ValueError(f"cell-retries: must be 0 or more, got {retries}")


def _check_reachable(address: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"ray-address: must be 'auto' or HOST:PORT (the head's GCS address, as `ray start --head` "
                         f"prints it), got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise ValueError(f"ray-address: cannot reach the Ray cluster at {address} ({e}, within "
                         f"{CONNECT_TIMEOUT_S:.0f} s); start it with `ray start --head` or fix --ray-address") from None


def connect(address: str | None, cell_cpus: float = 1, cell_gpus: float = 0) -> tuple[int, bool]:
    """Connect this process to Ray (unless it already is: ``ray.init`` called by the caller) and return how many
    cells the cluster can run at once, and whether this call connected. ``address`` None starts a local cluster
    (no dashboard) on this machine; ``"auto"`` joins the cluster started on this node by ``ray start``;
    ``HOST:PORT`` joins that head (checked reachable within ``CONNECT_TIMEOUT_S`` first). ValueError (CLI exit 2)
    naming ``--ray-address`` when it cannot be reached, and naming ``--cell-gpus`` / ``--cell-cpus`` when no alive
    node has that many GPUs / CPUs (``ray.nodes()``), before any cell is scheduled."""
    ray = import_ray()
    connected = not ray.is_initialized()
    if connected:
        env = {k: os.environ[k] for k in FORWARD_ENV if k in os.environ}
        env.update(QUIET_ENV)
        runtime_env = {"env_vars": env}
        if address not in (None, "auto"):
            _check_reachable(address)
        try:
            if address is None:
                ray.init(include_dashboard=False, runtime_env=runtime_env, log_to_driver=True)
            else:
                ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
        except ConnectionError as e:
            raise ValueError(f"ray-address: cannot connect to the Ray cluster at {address} ({e}); start it with "
                             f"`ray start --head` or fix --ray-address") from None
    try:
        return _slots(ray, cell_cpus, cell_gpus), connected
    except BaseException:
        if connected:
            ray.shutdown()
        raise


def _slots(ray, cell_cpus: float, cell_gpus: float) -> int:
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    total = {k: sum(n.get(k, 0) for n in nodes) for k in ("CPU", "GPU")}
    shown = f"cluster resources: {total['CPU']:g} CPU, {total['GPU']:g} GPU on {len(nodes)} node(s)"
    if cell_gpus > max((n.get("GPU", 0) for n in nodes), default=0):
        raise ValueError(f"cell-gpus: no node of the Ray cluster has {cell_gpus:g} GPU(s) ({shown}); use "
                         f"--cell-gpus 0 to run cells on CPUs")
    if cell_cpus > max((n.get("CPU", 0) for n in nodes), default=0):
        raise ValueError(f"cell-cpus: no node of the Ray cluster has {cell_cpus:g} CPU(s) ({shown})")
    return max(1, sum(int(min(n.get("CPU", 0) // cell_cpus,
                              n.get("GPU", 0) // cell_gpus if cell_gpus else float("inf"))) for n in nodes))


def _cell_task(config: "SweepConfig", cell: "Cell", tasks: list[str], delete_variant: bool) -> dict:
    """A Ray task's body: ``cell.run_cell`` on ``cell_cpus`` torch threads (the task's CPUs), logging its phases
    (Ray prefixes them with the task's name, the cell label)."""
    import torch

    from kick_hub.bench.cell import run_cell

    from transformers.utils import logging as hf_logging

    os.environ.update(QUIET_ENV)  # no progress bars from workers (a cluster joined without runtime_env too)
    hf_logging.disable_progress_bar()
    torch.set_num_threads(max(1, int(config.cell_cpus)))
    return run_cell(config, cell, tasks, delete_variant=delete_variant, log=lambda line: print(line, flush=True))


def _error(e: BaseException) -> str:
    cause = getattr(e, "cause", None)
    if cause is not None:  # a RayTaskError: the cell's own exception, with the worker's traceback
        return f"{type(cause).__name__}: {cause}\n{e}"
    return f"{type(e).__name__}: {e}"


def check_judge(judge) -> None:
    """Refuse (ValueError) a judge that cannot be sent to Ray workers (``ray.cloudpickle``)."""
    if judge is None:
        return
    ray = import_ray()
    try:
        ray.cloudpickle.dumps(judge)
    except Exception as e:
        raise ValueError(f"executor: the judge cannot be sent to Ray workers ({e}); run judged tasks with "
                         f"--executor local") from None


@contextmanager
def session(config: "SweepConfig") -> Iterator[int]:
    """Ray for the sweep of ``config``, for the block: refuses (ValueError) a judge that cannot be sent to workers
    (``check_judge``), connects (``connect``: ``ray_address``, ``cell_cpus``, ``cell_gpus``) and yields how many
    cells the cluster runs at once; on leaving, disconnects when it connected."""
    check_judge(config.judge)
    slots, connected = connect(config.ray_address, config.cell_cpus, config.cell_gpus)
    try:
        yield slots
    finally:
        if connected:
            import_ray().shutdown()


def run(config: "SweepConfig", todo: list[tuple["Cell", list[str]]], commit: Callable[["Cell", dict], None],
        store: "Store", run_id: int, slots: int = 1) -> dict[str, str]:
    """Run ``todo`` (cell, tasks it lacks) of the sweep of ``config`` as Ray tasks on the cluster this process is
    connected to (``session``) and ``commit`` each cell's result as it arrives; a cell given up on (its worker dead
    more than ``cell_retries`` times, or its own error) is recorded with ``store.record_failure`` and the others go
    on. Workers get ``config`` with the run dir made absolute and no progress bars; with ``keep_variants`` none each
    deletes its variant once evaluated. ``slots``: how many cells the cluster runs at once (for the progress bar).
    Returns label -> error of the cells that failed in this run."""
    from tqdm.auto import tqdm

    from kick_hub.variant import MANIFEST

    ray = import_ray()
    keep_variants, retries = config.keep_variants, config.cell_retries
    remote = ray.remote(num_cpus=config.cell_cpus, num_gpus=config.cell_gpus, max_retries=retries,
                        retry_exceptions=False)(_cell_task)
    # workers get an absolute run dir and show no progress bars (the driver shows the cells bar)
    config_ref = ray.put(config.replace(run_dir=config.run_dir.resolve(), progress=False))
    refs = {remote.options(name=cell.label).remote(config_ref, cell, missing, keep_variants == "none"): (cell, missing)
            for cell, missing in todo}
    failed: dict[str, str] = {}
    done = 0
    bar = tqdm(total=len(refs), desc="cells", unit="cell", disable=not config.progress)
    bar.set_postfix(done=0, running=min(slots, len(refs)), failed=0)
    while refs:
        ready, _ = ray.wait(list(refs), num_returns=1)
        for ref in ready:
            cell, missing = refs.pop(ref)
            try:
                out = ray.get(ref)
            except ray.exceptions.RayTaskError as e:  # the cell's own error: not retried in this run
                failed[cell.label] = _error(e)
                store.record_failure(cell.label, missing, failed[cell.label], 1, run_id)
            except ray.exceptions.RayError as e:  # its worker or node died more than `retries` times
                failed[cell.label] = _error(e)
                store.record_failure(cell.label, missing, failed[cell.label], retries + 1, run_id)
            else:
                if (cell.spec is not None and keep_variants != "none"
                        and not (Path(out["path"]) / MANIFEST).exists()):
                    failed[cell.label] = (
                        f"the driver cannot read the variant the worker on host {out['host']} wrote to "
                        f"{out['path']}: with --keep-variants {keep_variants} the run dir must be on storage "
                        f"every node sees (or use --keep-variants none)")
                    store.record_failure(cell.label, missing, failed[cell.label], 1, run_id)
                else:
                    commit(cell, out)
                    done += 1
            if cell.label in failed:
                print(f"[{cell.label}] failed: {failed[cell.label].splitlines()[0]}", file=sys.stderr)
            bar.update(1)
            bar.set_postfix(done=done, running=min(slots, len(refs)), failed=len(failed))
    bar.close()
    return failed
