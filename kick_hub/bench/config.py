"""A sweep's settings as one value: ``SweepConfig``, built once (by ``kick bench`` from its options, or by
``sweep.run`` from its keyword arguments), validated when built, and handed whole to the sweep, each cell (both
executors: a Ray worker gets the same value, pickled) and ``bench.runner.run_bench``.

The checks here are the ones that need nothing but the values (allowed choices, combinations that would silently do
nothing); checks that look at the machine or the network (Ray installed and reachable, the Hub org and token, the
model readable) are ``runner.run_bench``'s, made before the run dir's lock is taken.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kick_hub.bench.plan import Cell
    from kick_hub.device import Placement

KEEP_VARIANTS = ("all", "none", "pushed")
EXECUTORS = ("local", "ray")
# the Ray executor's options and their defaults: one given another value under --executor local is refused (it
# would be silently ignored)
RAY_DEFAULTS = {"ray_address": None, "cell_cpus": 1, "cell_gpus": 0, "cell_retries": 2}


def check_keep(keep_variants: str, push: str | None) -> None:
    """Refuse (ValueError) a ``--keep-variants`` value that is not one of ``KEEP_VARIANTS`` or that does not go
    with ``--push``: ``pushed`` needs it (a variant is deleted once pushed), ``none`` excludes it (nothing would be
    left to push)."""
    if keep_variants not in KEEP_VARIANTS:
        raise ValueError(f"keep-variants: must be one of {list(KEEP_VARIANTS)}, got {keep_variants!r}")
    if keep_variants == "pushed" and not push:
        raise ValueError("keep-variants: 'pushed' deletes each variant once --push has uploaded it, so it needs "
                         "--push ORG; give --push, or use --keep-variants none (delete once scored) or all")
    if keep_variants == "none" and push:
        raise ValueError("keep-variants: 'none' deletes each variant once it is scored, so --push would have "
                         "nothing to upload; use --keep-variants pushed (delete once pushed) or all")


def check_executor(executor: str, threads: int | None, ray_options: Mapping[str, Any]) -> None:
    """Refuse (ValueError) an executor that is not one of ``EXECUTORS``, ``--threads`` under Ray (each cell runs on
    ``--cell-cpus`` threads), a Ray option (``RAY_DEFAULTS``'s keys) given another value than its default under the
    local executor, and per-cell resources or retries that cannot be (``ray_executor.check_options``)."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor: must be one of {list(EXECUTORS)}, got {executor!r}")
    if executor == "ray" and threads is not None:
        raise ValueError("threads: under --executor ray each cell runs on --cell-cpus torch threads; give "
                         "--cell-cpus instead of --threads")
    given = ", ".join("--" + k.replace("_", "-") for k, v in RAY_DEFAULTS.items() if ray_options[k] != v)
    if executor != "ray" and given:
        raise ValueError(f"executor: {given} applies to --executor ray only; this run's executor is "
                         f"{executor!r} (add --executor ray, or drop {given})")
    if executor == "ray":
        from kick_hub.bench.ray_executor import check_options

        check_options(ray_options["cell_cpus"], ray_options["cell_gpus"], ray_options["cell_retries"])


def check_mcq_protocols(mcq_protocols: Sequence[str] | None, tasks: Sequence[str]) -> None:
    """Refuse (ValueError) ``--mcq-protocols`` naming a protocol that is not one of ``MCQ_PROTOCOLS``, or given
    when mcq-reasoning (the only task it scores) is not among ``tasks``: it would be silently ignored."""
    from kick_hub.tasks.mcq_reasoning import check_mcq_protocols as check_names

    check_names(mcq_protocols)
    if mcq_protocols and "mcq-reasoning" not in tasks:
        raise ValueError(f"mcq-protocols: applies to mcq-reasoning only, which is not among the selected tasks "
                         f"({', '.join(tasks)})")


@dataclass(frozen=True)
class SweepConfig:
    """Everything one ``kick bench`` sweep needs, checked when built (``__post_init__``: ValueError naming the
    option, the messages of ``check_keep`` / ``check_executor`` / ``check_mcq_protocols``). ``cells`` and ``tasks``
    are kept as tuples, ``run_dir`` as a Path; ``limit`` (an int, a task -> int mapping, or None: all) and ``judge``
    (task -> ``scoring.judge`` judge, or None) are kept as given.

    What each field means: ``model`` the base model (alias, directory or Hub id); ``run_dir`` where the store,
    variants and report live; ``data`` the data source; ``protocol`` the prompt protocol; ``calibration`` /
    ``nsamples`` / ``seqlen`` ``make_variant``'s calibration (None sizes: an id file's own shape); ``batch_size``
    the evaluation batch; ``threads`` torch threads of this process (set by ``run_bench``; None: the default);
    ``placement`` where models load and compress (None: auto); ``force`` move results measured with other settings
    aside instead of refusing; ``keep_variants`` one of ``KEEP_VARIANTS``; ``push`` the Hub org variants go to,
    ``private`` made private, ``results_repo`` the dataset repo the results go to (``run_bench``); ``executor`` one
    of ``EXECUTORS`` with the Ray options ``ray_address`` / ``cell_cpus`` / ``cell_gpus`` / ``cell_retries``;
    ``mcq_protocols`` the protocols mcq-reasoning is also scored under (a task setting of the store)."""

    model: str
    run_dir: Path
    cells: tuple["Cell", ...]
    tasks: tuple[str, ...]
    data: str = "world"
    limit: int | Mapping[str, int] | None = None
    protocol: str = "default"
    judge: Mapping[str, Any] | None = None
    force: bool = False
    calibration: str = "world"
    nsamples: int | None = None
    seqlen: int | None = None
    batch_size: int = 32
    threads: int | None = None
    progress: bool = True
    placement: "Placement | None" = None
    keep_variants: str = "all"
    push: str | None = None
    private: bool = False
    results_repo: str | None = None
    executor: str = "local"
    ray_address: str | None = None
    cell_cpus: float = 1
    cell_gpus: float = 0
    cell_retries: int = 2
    mcq_protocols: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__.__get__(self)  # frozen: normalise the fields once, here
        set_("run_dir", Path(self.run_dir))
        set_("cells", tuple(self.cells))
        set_("tasks", (self.tasks,) if isinstance(self.tasks, str) else tuple(self.tasks))
        set_("mcq_protocols", tuple(self.mcq_protocols) if self.mcq_protocols else None)
        check_keep(self.keep_variants, self.push)
        if self.keep_variants == "pushed" and any(c.spec is not None and c.spec.method == "gguf" for c in self.cells):
            raise ValueError("keep-variants: 'pushed' pushes each variant alone, but gguf quant types go to one GGUF "
                             "repo together (docs/gguf.md); use --keep-variants all with --push")
        from kick_hub.compress.pipeline import check_gguf_model

        check_gguf_model(self.model, [c.spec.method for c in self.cells if c.spec is not None])
        check_executor(self.executor, self.threads, {k: getattr(self, k) for k in RAY_DEFAULTS})
        check_mcq_protocols(self.mcq_protocols, self.tasks)
        from kick_hub.data import check_source

        check_source(self.data)
        from kick_hub.compress.pipeline import check_calibration_options  # no cell reads them: refused, not dropped

        check_calibration_options([c.spec for c in self.cells if c.spec is not None], self.calibration,
                                  self.nsamples, self.seqlen)

    def replace(self, **changes: Any) -> "SweepConfig":
        """A copy with ``changes`` (checked again)."""
        return replace(self, **changes)

    @property
    def protocols(self) -> list[str] | None:
        """``mcq_protocols`` as ``evaluation.evaluate`` and ``sweep.task_settings`` take it (a list, or None)."""
        return list(self.mcq_protocols) if self.mcq_protocols else None


FIELDS = tuple(f.name for f in fields(SweepConfig))
