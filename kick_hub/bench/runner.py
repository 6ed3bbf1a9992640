"""``kick bench`` as a function: ``run_bench(config)`` checks what the sweep needs from the machine and the network,
then, holding the run dir's lock throughout, runs the sweep (``sweep.execute``), writes the report and pushes the
variants / results when asked. ``cli.cmd_bench`` only turns the command line into a ``SweepConfig``, calls it and
prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kick_hub.bench.config import SweepConfig


@dataclass(frozen=True)
class BenchResult:
    """What a ``run_bench`` left: the run dir, its store (``results.sqlite``), ``report`` (report.md; report.html
    beside it), the cells that failed under the Ray executor (``Store.failed`` rows: label, tasks, error, attempts),
    the variants pushed (label -> commit URL), the results file's path in ``results_repo`` (None when not pushed),
    and per cell the tasks stored as invalid (non-finite logits; cells without any are left out)."""

    run_dir: Path
    store: Path
    report: Path
    failed: list[dict] = field(default_factory=list)
    pushed: dict[str, str] = field(default_factory=dict)
    results: str | None = None
    invalid: dict[str, list[str]] = field(default_factory=dict)

    @property
    def html(self) -> Path:
        """The HTML report beside ``report``."""
        return self.run_dir / "report.html"

    @property
    def exit_status(self) -> int:
        """``kick bench``'s exit status: 1 when cells failed, ``evaluation.INVALID_EXIT`` when a task is invalid,
        else 0."""
        from kick_hub.evaluation import INVALID_EXIT

        return 1 if self.failed else INVALID_EXIT if self.invalid else 0


def check_ready(config: SweepConfig) -> None:
    """What the sweep of ``config`` needs beyond its values, checked before the run dir is locked or written: Ray
    installed under ``executor="ray"`` (ImportError with the install command), the ``push`` org, the
    ``results_repo`` id and a Hub token when something is pushed (ValueError / ``hub.HubError``), and a model that
    can be read (``models.load_config``: ValueError naming ``model``; for a GGUF file, llama-cpp-python installed
    and the file there)."""
    if config.executor == "ray":
        from kick_hub.bench.ray_executor import import_ray

        import_ray()
    if config.push:  # checked before the sweep, not after an hour of work
        from kick_hub.hub import check_org, check_repo_id, token

        check_org(config.push, "push")
        if config.results_repo:
            check_repo_id(config.results_repo, "results-repo")
        token()
    from kick_hub.backends.llamacpp import find_gguf

    if find_gguf(config.model) is not None:  # a GGUF dense model: llama.cpp installed, the file there
        from kick_hub.backends.llamacpp import check_available, gguf_path

        check_available()
        gguf_path(config.model)
        return
    from kick_hub.models import load_config

    load_config(config.model)  # a model that cannot be read fails here, before the run dir or its store is written


def judge_estimate(config: SweepConfig) -> str:
    """``scoring.judge.format_estimate`` for the sweep of ``config`` (which has a judge): per judged task, the cells
    not yet evaluated on it (from the run dir's store) and its examples (``records.load`` with the task's limit;
    prompts that will not fit the model's context are still counted)."""
    from kick_hub.bench.store import FILENAME, Store
    from kick_hub.evaluation import task_limit
    from kick_hub.scoring.judge import format_estimate
    from kick_hub.tasks import records

    done: dict = {}
    if (config.run_dir / FILENAME).exists():
        store = Store(config.run_dir, None)
        try:
            done = store.done()
        finally:
            store.close()
    examples, todo = {}, {}
    for t in config.judge:
        try:
            examples[t] = len(records.load(t, config.data, task_limit(config.limit, t)))
        except ValueError:  # no data for it: the sweep skips it
            examples[t] = 0
        todo[t] = sum(t not in done.get(c.label, ()) for c in config.cells)
    return format_estimate(config.judge, examples, todo)


def run_bench(config: SweepConfig, log: Callable[[str], None] | None = None) -> BenchResult:
    """``kick bench``'s run: ``check_ready``, torch threads set to ``config.threads``, the judge's cost estimate
    logged; then, holding the run dir's lock (``sweep.hold``; RunDirBusy when another process has it): the sweep
    (``sweep.execute``), the report (``report.write``; its head and paths logged, with the judge's usage), and, with
    ``push``, the variants (each pushed once scored under ``keep_variants="pushed"``, else all now:
    ``hub.push.push_sweep``), with ``results_repo`` the results (``hub.results.push_results``), each logged as it is
    done. ``log`` takes each line (None: silent). Raises what those raise (StoreError for other settings, ValueError
    for bad Ray input, ``hub.HubError`` for a failed push); cells that failed under Ray do not raise: they are in
    the result."""
    from kick_hub.bench import report, sweep
    from kick_hub.bench.store import FILENAME
    from kick_hub.device import set_threads

    say = log or (lambda line: None)
    check_ready(config)
    set_threads(config.threads)
    if config.judge:  # the cost before paying it
        say(judge_estimate(config))
    run_dir = config.run_dir
    with sweep.hold(run_dir):  # one driver per run dir, from the sweep through the report and the pushes
        store = sweep.execute(config)
        try:
            path = report.write(store, run_dir)
            failed, pushed = store.failed(), store.pushed()
            invalid = {label: [t for t, x in tasks.items() if x.get("non_finite_logits")]
                       for label, tasks in store.scores().items()}
        finally:
            store.close()
        say(path.read_text().split("## Scores")[0])
        say(f"report: {path} and {run_dir / 'report.html'}")
        if config.judge:
            from kick_hub.scoring.judge import format_usage, total_usage

            say(f"judge this run: {format_usage(total_usage(config.judge))}")
        urls: dict[str, str] = {}
        if config.push and config.keep_variants == "pushed":  # each variant was pushed once scored, then deleted
            urls = {label: info["url"] for label, info in pushed.items()}
        elif config.push:
            from kick_hub.hub.push import push_sweep

            urls = push_sweep(run_dir, config.push, config.private)
        for label, url in urls.items():
            say(f"pushed {label}: {url}")
        results = None
        if config.results_repo:
            from kick_hub.hub.results import push_results

            results = push_results(run_dir, config.results_repo, config.private)
            say(f"results: {config.results_repo}/{results}")
    return BenchResult(run_dir, run_dir / FILENAME, path, failed, urls, results,
                       {label: tasks for label, tasks in invalid.items() if tasks})
