"""``kick bench``: the LLM-KICK sweep (``kick_hub.bench``) and its plan of cells from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kick_hub.cli.options import (_add_device_options, _add_judge_options, _add_mcq_protocols, _add_threads_option,
                                  _dir_problem, _judges, _method_arg, _method_args, _nonneg_float, _nonneg_int,
                                  _placement, _positive_int, _ratio, _task_limit, add_private_option)


def cmd_bench(args) -> int:
    """``kick bench``: with ``--status`` print what is done and return; otherwise turn the options into a
    ``bench.SweepConfig`` and run it (``bench.run_bench``: lock, resumable compress x evaluate sweep, report,
    pushes), printing its lines. Returns 0, 1 when cells failed under ``--executor ray`` (listed on stderr after the
    report of the others is written), or ``evaluation.INVALID_EXIT`` when a stored task is invalid (non-finite
    logits); raises ValueError for a bad plan, task, judge, ``--keep-variants`` / ``--push`` pair or Ray option,
    and ``hub.HubError`` for a failed push."""
    from kick_hub.bench import SweepConfig, run_bench, sweep
    from kick_hub.evaluation import merge_limits, resolve_tasks

    cells = _bench_plan(args)
    run_dir = Path(args.run_dir or f"runs/{Path(args.model).name}")
    task_names = resolve_tasks(args.tasks)
    config = SweepConfig(  # checks the options' values (and combinations) before anything is read or written
        model=args.model, run_dir=run_dir, cells=cells, tasks=task_names, data=args.data,
        limit=merge_limits(args.limit, args.task_limit), protocol=args.protocol, force=args.force,
        calibration=args.calibration, nsamples=args.nsamples, seqlen=args.seqlen, batch_size=args.batch_size,
        threads=args.threads, keep_variants=args.keep_variants, push=args.push, private=args.private,
        results_repo=args.results_repo, executor=args.executor, ray_address=args.ray_address,
        cell_cpus=args.cell_cpus, cell_gpus=args.cell_gpus, cell_retries=args.cell_retries,
        mcq_protocols=args.mcq_protocols)
    if args.status:  # reads only: no lock, works while a sweep runs; without plan options, the run's own cells
        planned = args.methods or args.sparsities or args.patterns or args.bits or args.group_size
        print(sweep.status(run_dir, cells if planned else None, task_names if args.tasks != ["all"] else None))
        return 0
    problem = _dir_problem(run_dir)  # probed here, not while parsing: --status reads a run dir on read-only media
    if problem:
        raise ValueError(f"{'run-dir' if args.run_dir is None else 'argument --run-dir'}: {problem}")
    from kick_hub.scoring.judge.cache import FILENAME as JUDGE_CACHE

    judges = _judges(args, task_names, run_dir / JUDGE_CACHE)  # the cache stays beside the run, never published
    result = run_bench(config.replace(judge=judges, placement=_placement(args)), log=print)
    for f in result.failed:  # the report holds every other cell; a rerun of the same command retries these
        print(f"failed {f['label']} after {f['attempts']} attempt(s): {f['error'].strip().splitlines()[0]}",
              file=sys.stderr)
    if result.failed:
        print(f"kick: {len(result.failed)} cell(s) failed; run the same command again to retry them",
              file=sys.stderr)
    else:
        for label, tasks in result.invalid.items():  # NaN / inf logits: the report says "invalid" for a score
            print(f"kick: error: {label}: {', '.join(tasks)} invalid (non-finite logits; see the report)",
                  file=sys.stderr)
    return result.exit_status


def _bench_plan(args) -> list:
    """The sweep's cells from ``--methods`` / ``--sparsities`` / ``--patterns`` / ``--bits`` / ``--group-size``
    (each None when not given: ``bench.plan``'s defaults). ValueError (exit 2) for an option no chosen method uses,
    which would otherwise be silently dropped (``--bits`` without gptq, ``--sparsities`` / ``--patterns`` without a
    pruning method)."""
    from kick_hub.bench import plan
    from kick_hub.compress import PRUNING_METHODS, registry

    external = bool(args.variant or args.variants)
    # with --variant / --variants and no --methods: dense and the external checkpoints only
    methods = args.methods or ([] if external else list(plan.DEFAULT_METHODS))
    unknown = [m for m in methods if m not in plan.METHODS and not registry.is_method(m)]
    if unknown:  # a typo must be named as such, not read as "no method uses --sparsities"
        plan.plan(unknown, [], [], [])  # names the plugins installed, or why a package.module:name did not load
    plugins = {m: registry.find_plugin(m) for m in methods if m not in plan.METHODS}
    pruning = [m for m in methods if m in PRUNING_METHODS or (m in plugins and plugins[m].kind == "pruning")]
    quantizers = [m for m in methods if m == "gptq" or (m in plugins and plugins[m].kind == "quantization")]
    unused = [option for option, value, used in (
        ("--bits", args.bits or None, quantizers), ("--group-size", args.group_size, "gptq" in methods),
        ("--quant-types", getattr(args, "quant_types", None) or None, "gguf" in methods),
        ("--sparsities", args.sparsities or None, pruning), ("--patterns", args.patterns or None, pruning))
        if value is not None and not used]
    if unused:
        raise ValueError(f"methods: {', '.join(unused)} applies to no method of this sweep ({' '.join(methods)}); "
                         f"--bits and --group-size are for gptq, --quant-types for gguf, --sparsities and "
                         f"--patterns for {', '.join(PRUNING_METHODS)} (add such a method, or drop "
                         f"{', '.join(unused)})")
    pick = lambda given, default: list(default) if given is None else given  # noqa: E731
    cells = plan.plan(methods, pick(args.sparsities, plan.DEFAULT_SPARSITIES), pick(args.patterns,
                      plan.DEFAULT_PATTERNS), pick(args.bits, plan.DEFAULT_BITS),
                      128 if args.group_size is None else args.group_size, _method_args(args.method_arg),
                      quant_types=pick(getattr(args, "quant_types", None), plan.DEFAULT_QUANT_TYPES))
    if not external:
        return cells
    from kick_hub import external as ext

    entries = [dict(zip(("label", "source"), ext.parse_variant(v)), revision=None, notes=None)
               for v in args.variant or []]
    for path in args.variants or []:
        entries += ext.read_variants_file(path)
    return plan.external_cells(cells, ext.resolve_all(entries, reserved=[c.label for c in cells]))


def add_bench(sub: argparse._SubParsersAction) -> None:
    """The ``bench`` command."""
    from kick_hub.bench import plan
    from kick_hub.compress import METHODS
    from kick_hub.tasks import TASK_NAMES

    p = sub.add_parser("bench", help="the LLM-KICK sweep: compress x evaluate, resumable, with a report")
    p.add_argument("--model", default="world", help="Hub id, local directory, or 'world' (default)")
    p.add_argument("--run-dir", type=Path, default=None, help="results, variants and report (default "
                   "runs/<model>); paths inside it are relative, so a finished run dir can be moved or copied")
    p.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                   help=f"from {', '.join(METHODS)}, an installed method plugin's name or package.module:name "
                   f"(default {' '.join(plan.DEFAULT_METHODS)}; none with --variant / --variants)")
    p.add_argument("--method-arg", type=_method_arg, action="append", metavar="KEY=VALUE", help="a parameter of "
                   "the sweep's method plugins (repeatable), typed and checked by each plugin")
    p.add_argument("--variant", action="append", default=None, metavar="LABEL=SOURCE", help="also evaluate this "
                   "checkpoint as cell LABEL, paired with dense (repeatable): a local directory or a Hub id "
                   "ORG/NAME[@REV] (docs/playground.md)")
    p.add_argument("--variants", action="append", default=None, type=Path, metavar="FILE", help="external "
                   "checkpoints from a TOML file ([[variant]] tables: label, source, revision, notes; YAML too when "
                   "PyYAML is installed)")
    p.add_argument("--sparsities", nargs="*", type=_ratio, default=None,
                   help=f"for the pruning methods (default {' '.join(map(str, plan.DEFAULT_SPARSITIES))})")
    p.add_argument("--patterns", nargs="*", default=None, help="N:M patterns, N pruned of every M (default "
                   f"{' '.join(plan.DEFAULT_PATTERNS)}; 3:4 = 75 %% sparsity)")
    p.add_argument("--bits", nargs="*", type=int, default=None,
                   help=f"GPTQ bits (default {' '.join(map(str, plan.DEFAULT_BITS))})")
    p.add_argument("--group-size", type=int, default=None, help="GPTQ group size (default 128; -1: per row)")
    p.add_argument("--quant-types", nargs="+", default=None, metavar="TYPE", help="gguf: llama.cpp quant types "
                   f"(default {' '.join(plan.DEFAULT_QUANT_TYPES)}; docs/gguf.md)")
    p.add_argument("--tasks", nargs="+", default=["all"], metavar="TASK", help=f"from {', '.join(TASK_NAMES)}")
    p.add_argument("--task-limit", type=_task_limit, action="append", metavar="TASK=N",
                   help="per-task override of --limit (repeatable), e.g. icsum=6 for slow generation tasks")
    p.add_argument("--limit", type=_positive_int, default=100,
                   help="examples per task (default 100, which keeps the default world sweep within 10 min)")
    p.add_argument("--data", default="world", help="as for kick evaluate")
    p.add_argument("--protocol", choices=["default", "llm-kick"], default="default")
    _add_mcq_protocols(p)
    p.add_argument("--calibration", default="world", help="as for kick compress")
    p.add_argument("--nsamples", type=_positive_int, default=None, help="as for kick compress")
    p.add_argument("--seqlen", type=_positive_int, default=None, help="as for kick compress")
    p.add_argument("--batch-size", type=_positive_int, default=32)
    _add_threads_option(p)
    p.add_argument("--force", action="store_true", help="when the run dir holds results measured with other "
                   "settings (model, data, limits, protocol, calibration, judge, batch size, a cell's spec), move "
                   "them aside to RUN_DIR/superseded/<time>/ and start over (without it such a run is refused)")
    p.add_argument("--status", action="store_true", help="show what is done and exit")
    p.add_argument("--push", default=None, metavar="ORG", help="push every variant to ORG/<model>-<label>")
    p.add_argument("--results-repo", default=None, metavar="ORG/NAME", help="also add the run to this results "
                   "dataset repo")
    add_private_option(p, "pushed repos")
    p.add_argument("--keep-variants", choices=["all", "none", "pushed"], default="all", help="all (default): keep "
                   "every variant under RUN_DIR/variants/; none: delete a cell's variant once its scores are "
                   "committed; pushed: delete it once --push has uploaded it (pushed per cell during the sweep)")
    p.add_argument("--executor", choices=["local", "ray"], default="local", help="local (default): cells one "
                   "after another in this process; ray: each cell a Ray task (docs/cluster.md)")
    p.add_argument("--ray-address", default=None, metavar="auto|HOST:PORT", help="the Ray cluster to join "
                   "(default: start a local one)")
    p.add_argument("--cell-cpus", type=_positive_int, default=1, help="CPUs per Ray cell task (its torch threads)")
    p.add_argument("--cell-gpus", type=_nonneg_float, default=0, help="GPUs per Ray cell task (default 0)")
    p.add_argument("--cell-retries", type=_nonneg_int, default=2, help="times Ray reruns a cell whose worker "
                   "died (default 2); then the cell is recorded as failed and the sweep goes on")
    _add_judge_options(p)
    _add_device_options(p, device_map=False)
    p.set_defaults(func=cmd_bench)
