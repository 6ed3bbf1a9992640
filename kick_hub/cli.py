"""The ``kick`` command: parses, validates, calls the library. No logic of its own."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path


def _phase(spec: str):
    """``CURRICULUM:STEPS[:LR]`` -> a train.Phase (``world.train.parse_phase``)."""
    from kick_hub.world.train import parse_phase

    try:
        return parse_phase(spec)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}")
    return n


def _nonneg_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {value!r}")
    return n


def _nonneg_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {value!r}") from None
    if not x >= 0 or x == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {value!r}")
    return x


def _task_limit(value: str) -> tuple[str, int]:
    from kick_hub.tasks import TASK_NAMES

    task, _, n = value.partition("=")
    if task not in TASK_NAMES:
        raise argparse.ArgumentTypeError(f"task must be one of {list(TASK_NAMES)}, got {task!r}")
    return task, _positive_int(n)


def _writable_file(value: str) -> Path:
    path = Path(value)
    parent = path.parent if str(path.parent) else Path(".")
    existing = next((p for p in [parent, *parent.parents] if p.exists()), Path("."))
    try:  # a real probe: os.access says yes to root even where nothing can be created (e.g. /proc)
        os.rmdir(tempfile.mkdtemp(prefix=".kick-probe-", dir=existing))
    except OSError:
        raise argparse.ArgumentTypeError(f"{value!r} is not writable ({existing} is not a writable directory)") from None
    return path


def _output_file(value: str) -> Path:
    """A file to write: its directory writable (``_writable_file``) and the path not an existing directory."""
    path = _writable_file(value)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{value!r} is a directory; give a file path such as "
                                         f"{str(path / 'results.json')!r}")
    return path


def _dir_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a directory kick creates or writes into (None: it can): the nearest existing directory
    must accept a new entry (a real probe, as ``_writable_file``), so read-only media fail before any work."""
    if path.exists() and not path.is_dir():
        return f"{str(path)!r} exists and is not a directory"
    existing = next((p for p in [path, *path.parents] if p.exists()), Path("."))
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".kick-probe-", dir=existing))
    except OSError as e:
        return f"{str(path)!r} is not writable ({existing}: {e.strerror})"
    return None


def _new_dir(value: str) -> Path:
    """An argparse ``type=`` for a directory kick creates whole and writes through ``io.atomic_dir`` (which would
    replace what is there): writable (``_writable_file``) and either absent or an empty directory, so a user's file
    or folder is never replaced."""
    path = _writable_file(value)
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        kind = "a non-empty directory" if path.is_dir() else "a file"
        raise argparse.ArgumentTypeError(f"{value!r} exists and is {kind}; give a new directory (nothing there is "
                                         "replaced)")
    return path


def _writable_dir(value: str) -> Path:
    """An argparse ``type=`` for a directory to create or write into (``_dir_problem``)."""
    problem = _dir_problem(Path(value))
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return Path(value)


def _add_threads_option(p: argparse.ArgumentParser) -> None:
    """``--threads``: torch's thread count for the command's work (``kick_hub.device.resolve_threads``)."""
    p.add_argument("--threads", type=_positive_int, default=None, help="torch threads (default: OMP_NUM_THREADS, "
                   "else the CPUs this process may use, capped by its cgroup CPU quota); on cores busy with other "
                   "work fewer threads can be several times faster (docs/performance.md); SparseGPT and GPTQ "
                   "weights depend on it bit for bit")


def _world_config(args):
    from kick_hub.world.generate import WorldConfig

    fields = ("seed", "n_known", "n_unseen", "n_reading", "n_cities", "n_countries", "n_companies")
    return WorldConfig(**{f: getattr(args, f) for f in fields if getattr(args, f, None) is not None})


def _add_world_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=_nonneg_int, default=None, help="world seed (default 0)")
    for name in ("known", "unseen", "reading", "cities", "countries", "companies"):
        p.add_argument(f"--n-{name}", dest=f"n_{name}", type=int, default=None, help=f"number of {name}")


# ------------------------------------------------------------------ commands
def cmd_world_info(args) -> int:
    """``kick world info``: print the world sizes, the world model directory, its parameter count and measured
    scores (``world.info``), as text or with ``--json`` as JSON. Returns 0; a bad world size raises ValueError."""
    from kick_hub.io import dumps
    from kick_hub.world import info

    data = info.info(_world_config(args))
    print(dumps(data, indent=2) if args.json else info.format_info(data))
    return 0


def cmd_world_build(args) -> int:
    """``kick world build``: write the world's eval sets in the real datasets' formats to ``--output``
    (``world.export.write``). Returns 0; a bad world size raises ValueError."""
    from kick_hub.world.export import write
    from kick_hub.world.generate import World

    out = write(World(_world_config(args)), args.output)
    print(f"wrote world eval sets to {out}")
    return 0


def cmd_world_train(args) -> int:
    """``kick world train``: train a world model into ``--output`` (``world.train.train``; the full recipe takes
    about 42 min on 2 cores), then measure and print its scores. Returns 0; raises ValueError for an ``--init``
    without ``--phase`` or that is no world model checkpoint (``world.train.check_init``)."""
    from kick_hub.io import dumps
    from kick_hub.world import info
    from kick_hub.world.train import TrainConfig, check_init, train

    check_init(args.init, args.phase)
    overrides = {"compile": not args.no_compile}
    if args.phase:
        overrides["phases"] = tuple(args.phase)
    out = train(args.output, _world_config(args), TrainConfig(**overrides), init=args.init)
    scores = info.measure(str(out), limit=args.measure_limit)
    print(f"trained world model in {out}\n" + dumps(scores, indent=2))
    return 0


def _add_mcq_protocols(p: argparse.ArgumentParser) -> None:
    from kick_hub.tasks.mcq_reasoning import MCQ_PROTOCOLS

    p.add_argument("--mcq-protocols", nargs="+", choices=list(MCQ_PROTOCOLS), default=None, metavar="PROTOCOL",
                   help="also score mcq-reasoning under each of these protocols (loglik: letters' log-likelihood, "
                        "as lm-eval; generate: the letter the model generates, as LLM-KICK), stored as "
                        "accuracy_<protocol>, so one run shows both and their gap")


def _check_mcq_protocols(args, task_names: list[str]) -> None:
    """``--mcq-protocols`` scores mcq-reasoning only: refused (ValueError, exit 2) when that task is not selected,
    rather than silently ignored (the check ``kick bench``'s ``SweepConfig`` makes)."""
    from kick_hub.bench.config import check_mcq_protocols

    check_mcq_protocols(args.mcq_protocols, task_names)


def cmd_evaluate(args) -> int:
    """``kick evaluate``: run a model on tasks (``evaluation.evaluate``), print the results table and the skipped
    tasks, and write the JSON to ``--output`` when given. Returns 0, or 3 (``evaluation.INVALID_EXIT``, after
    writing everything) when a task is invalid because the model gave non-finite logits (``evaluation.mark_invalid``;
    each is named on stderr); raises ValueError for an unknown task, judge spec or data source."""
    from kick_hub.device import set_threads
    from kick_hub.backends import make_engine
    from kick_hub.evaluation import INVALID_EXIT, evaluate, invalid_tasks, resolve_tasks, table, write_json

    task_names = resolve_tasks(args.task)  # validate names before loading anything
    _check_mcq_protocols(args, task_names)
    from kick_hub.data import check_source

    check_source(args.data)
    from kick_hub.models import cache_root
    from kick_hub.scoring.judge.cache import FILENAME as JUDGE_CACHE

    judges = _judges(args, task_names, cache_root() / JUDGE_CACHE)
    set_threads(args.threads)
    engine = make_engine(args.model, placement=_placement(args), batch_size=args.batch_size,
                         **({"gguf_file": args.gguf_file} if getattr(args, "gguf_file", None) else {}))
    out = evaluate(engine, task_names, args.data, args.limit, args.protocol, judges, model_name=args.model,
                   skip_missing=len(task_names) > 1, mcq_protocols=args.mcq_protocols)
    print(table(out["results"]))
    for name, why in out["config"]["skipped"].items():
        print(f"skipped {name}: {why}", file=sys.stderr)
    if args.output:
        write_json(out, args.output)
        print(f"wrote {args.output}")
    invalid = invalid_tasks(out["results"])
    for name, why in invalid.items():
        print(f"kick: error: {name} is invalid: {why}", file=sys.stderr)
    return INVALID_EXIT if invalid else 0


def _ratio(value: str) -> float:
    try:
        r = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {value!r}") from None
    if not 0 <= r < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value!r}")
    return r


def _method_arg(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"must be KEY=VALUE (a method plugin's parameter), got {value!r}")
    return key.strip(), val.strip()


def _method_args(pairs: list[tuple[str, str]] | None) -> dict[str, str]:
    """``--method-arg KEY=VALUE`` pairs as a dict; a key given twice is refused (ValueError)."""
    out: dict[str, str] = {}
    for key, value in pairs or []:
        if key in out:
            raise ValueError(f"method-arg: {key} given twice ({out[key]!r} and {value!r})")
        out[key] = value
    return out


def compress_spec(args: argparse.Namespace):
    """The ``CompressSpec`` of parsed ``kick compress`` options (``--method`` a built-in method, a plugin's name or
    ``package.module:name``; ``--method-arg`` its parameters, typed by the plugin)."""
    from kick_hub.compress import CompressSpec

    return CompressSpec(method=args.method, sparsity=args.sparsity, pattern=args.pattern, bits=args.bits,
                        group_size=args.group_size, desc_act=args.desc_act, sym=not args.asym, damp=args.damp,
                        blocksize=args.blocksize, seed=args.seed, quant_type=getattr(args, "quant_type", None),
                        args=_method_args(args.method_arg))


def cmd_compress(args) -> int:
    """``kick compress``: write one pruned or quantized variant directory (``compress.make_variant``) and print its
    label, sparsity (pruning) or effective bits per weight (quantization, ``variant.storage_summary``), wall time
    (s) and peak RSS. Returns 0; raises ValueError for a spec the method cannot take or
    a bad calibration option."""
    from kick_hub.compress import make_variant
    from kick_hub.compress.pipeline import check_calibration_options
    from kick_hub.device import set_threads

    spec = compress_spec(args)
    # options that this method reads none of are refused here (a sweep gives every cell the sweep's calibration
    # options: there `check_plan` refuses them only when no cell calibrates)
    check_calibration_options([spec], args.calibration, args.nsamples, args.seqlen)
    set_threads(args.threads)
    out = make_variant(args.model, spec, args.output, args.calibration, args.nsamples, args.seqlen,
                       overwrite=args.overwrite, storage=args.storage, placement=_placement(args))
    from kick_hub.variant import load_manifest, storage_summary

    m = load_manifest(out)
    stored = storage_summary(out, m)
    what = (f"sparsity {m['sparsity']:.4f}" if spec.prunes else
            f"{stored['bits_per_weight']:.2f} bits per weight" if stored["bits_per_weight"] else
            f"{m['bits_per_weight']:.2f} bits per weight" if m.get("bits_per_weight") else "quantized")
    print(f"wrote {out}: {m['label']}, {what}, {m['wall_time_s']} s, peak RSS {m['peak_rss_mb']:.0f} MB")
    return 0


def cmd_sparsity(args) -> int:
    """``kick sparsity``: compare a variant's per-layer sparsity with its manifest (``variant.check_sparsity``) and
    print the report. Returns 0 when every layer matches, 1 otherwise; raises ValueError when the variant is not a
    pruned one or has nothing to compare."""
    from kick_hub.variant import check_sparsity, format_sparsity

    rows = check_sparsity(args.variant)  # raises (exit 2) when there is nothing to compare
    print(format_sparsity(rows, args.verbose))
    return 0 if rows and all(r["ok"] for r in rows) else 1


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


def cmd_push(args) -> int:
    """``kick push``: upload a variant with its model card to ``--repo-id`` in one commit
    (``hub.push.push_variant``) and print the commit URL. Returns 0; raises ValueError for a bad repo id, variant
    or run dir, and ``hub.HubError`` when there is no token or the upload fails."""
    from kick_hub.hub.push import push_variant

    print(push_variant(args.variant, args.repo_id, args.private, args.run_dir, args.base_model))
    return 0


def cmd_publish_tasks(args) -> int:
    """``kick publish-tasks``: publish each task's evaluate module as a Space under ``--org``
    (``hub.tasks.publish_tasks``) and print each Space's commit URL. Returns 0; raises ValueError for a bad org or
    task, and ``hub.HubError`` when there is no token or an upload fails."""
    from kick_hub.hub.tasks import publish_tasks

    for space, url in publish_tasks(args.org, args.private, only=args.tasks).items():
        print(f"{space}: {url}")
    return 0


def cmd_space(args) -> int:
    """``kick space``: serve the comparison app locally (``space.launch``) until Ctrl+C, then return 0. Raises
    ValueError when ``--run-dir`` holds no results store (``space.check_run_dir``)."""
    from kick_hub import space
    from kick_hub.device import set_threads

    space.check_run_dir(args.run_dir)
    set_threads(args.threads)
    _, url = space.launch(args.run_dir, args.host, args.port, args.allow, args.data, args.results_repo, block=False,
                          placement=_placement(args))
    print(f"kick-hub Space running at {url} (Ctrl+C to stop)")
    try:
        import time

        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


def cmd_push_results(args) -> int:
    """``kick push-results``: add a run's results to the Hub dataset repo ``--repo-id``
    (``hub.results.push_results``) and print the file's path in the repo. Returns 0; raises ValueError for a bad
    repo id or run dir, and ``hub.HubError`` when there is no token or the upload fails."""
    from kick_hub.hub.results import push_results

    print(push_results(args.run_dir, args.repo_id, args.private))
    return 0


def cmd_publish_space(args) -> int:
    """``kick publish-space``: put the comparison app on the Hub as the Gradio Space ``repo_id``
    (``hub.space_repo.publish_space``: files, variables, hardware) and print its URL and commit. Returns 0; raises
    ValueError for a bad repo id, ``--allow`` id, ``--results-repo`` or ``--hardware``, and ``hub.HubError`` when
    there is no token or a Hub call fails."""
    from kick_hub.hub.space_repo import publish_space

    out = publish_space(args.repo_id, args.allow, args.results_repo, args.hardware, args.private)
    print(f"Space: {out['space']}\ncommit: {out['commit']}")
    for key, value in out["variables"].items():
        print(f"variable {key}={value}")
    if out["hardware"]:
        print(f"hardware requested: {out['hardware']}")
    if out["kernels"]:
        print(f"requirements for the allowed models: {' '.join(out['kernels'])}")
    if out["unchecked"]:
        print(f"not found on the Hub, so what they need to load is not in requirements.txt: "
              f"{', '.join(out['unchecked'])}")
    return 0


def _device_option(parse, option: str):
    """An argparse ``type=`` for ``option`` from a ``kick_hub.device.parse_*`` function: its ValueError becomes an
    argparse error (exit 2) naming the option and the allowed values."""
    def check(value: str):
        try:
            return parse(value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e).split(": ", 1)[1]) from None
    check.__name__ = option.lstrip("-").replace("-", "_")
    return check


def _add_device_options(p: argparse.ArgumentParser, device_map: bool = True) -> None:
    """``--device``, ``--dtype`` and (for evaluation) ``--device-map`` / ``--max-memory``, checked while parsing
    (``kick_hub.device``'s syntax rules); whether the device is present is checked before any model is loaded."""
    from kick_hub import device

    p.add_argument("--device", type=_device_option(device.parse_device, "--device"), default="auto",
                   help=f"one of {', '.join(device.DEVICES)} (default auto: the GPU when present, else the CPU)")
    p.add_argument("--dtype", type=_device_option(device.parse_dtype, "--dtype"), default="auto",
                   help=f"one of {', '.join(device.DTYPES)} (default auto: the checkpoint's dtype on an accelerator, "
                        "float32 on CPU)")
    if device_map:
        p.add_argument("--device-map", type=_device_option(device.parse_device_map, "--device-map"), default=None,
                       help="auto: spread the model over the GPUs (and CPU) with accelerate; refused before loading "
                            "when it cannot fit")
        p.add_argument("--max-memory", type=_device_option(device.parse_max_memory, "--max-memory"), default=None,
                       metavar="DEVICE=SIZE,...", help="with --device-map auto: memory per device, e.g. "
                       "0=20GiB,1=20GiB,cpu=60GiB (accelerate's sizes)")


def _placement(args):
    """The ``kick_hub.device.Placement`` of the parsed ``--device`` / ``--dtype`` / ``--device-map`` /
    ``--max-memory`` options; ValueError (exit 2) for ``--max-memory`` without ``--device-map auto`` and for a device
    that is not on this machine."""
    from kick_hub.device import make_placement, resolve_device

    placement = make_placement(args.device, args.dtype, getattr(args, "device_map", None),
                               getattr(args, "max_memory", None))
    if placement.device_map is None:
        resolve_device(placement.device)  # a device that is not here fails now, before any other work
    return placement


# the --judge-* options' defaults: one given with another value but no --judge is an error (``_judges``)
_JUDGE_DEFAULTS = {"judge_base_url": None, "judge_api_key_env": "OPENAI_API_KEY", "judge_prompt": None,
                   "judge_concurrency": 8, "judge_rpm": None, "judge_retries": 4, "judge_no_cache": False,
                   "judge_max_unparsable": 0.5}


def _judges(args, task_names, cache: Path | None):
    """The ``--judge*`` options as ``scoring.judge.make_judges`` judges (None without ``--judge``), their verdicts
    cached at ``cache`` (read unless ``--judge-no-cache``). Builds the backend, so a missing API key variable fails
    here (ValueError naming it), before any model is loaded. ValueError (exit 2) for a ``--judge-*`` option given
    without ``--judge``, for ``--judge`` when none of ``task_names`` is judged (the judge's options are checked only
    for the judged tasks selected), and for a ``--judge-prompt`` that does not fit a selected judged task."""
    from kick_hub import tasks
    from kick_hub.scoring.judge import make_judges

    if not args.judge:
        given = ["--" + k.replace("_", "-") for k, v in _JUDGE_DEFAULTS.items() if getattr(args, k, v) != v]
        if given:
            raise ValueError(f"{', '.join(given)}: {'needs' if len(given) == 1 else 'each needs'} --judge (nothing "
                             f"is judged without it)")
        return None
    judged = [n for n, s in tasks.SPECS.items() if s.judge_prompt]
    if not any(n in judged for n in task_names):
        raise ValueError(f"--judge: applies to {' / '.join(judged)} only, and none of the selected tasks "
                         f"({', '.join(task_names)}) is judged")
    if cache is not None:  # every verdict is written there after its request is paid: probe it first
        folder = next((p for p in [cache.parent, *cache.parent.parents] if p.exists()), Path("."))
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".kick-probe-", dir=folder))
        except OSError as e:
            raise ValueError(f"judge: the verdict cache {cache} cannot be written ({folder}: {e.strerror}); point "
                             f"KICK_HUB_CACHE (kick evaluate) or --output / --run-dir at a writable folder") from None
    return make_judges(args.judge, task_names, args.judge_base_url, args.judge_api_key_env, args.judge_prompt,
                       concurrency=args.judge_concurrency, rpm=args.judge_rpm, max_retries=args.judge_retries,
                       cache=cache, use_cache=not args.judge_no_cache, max_unparsable=args.judge_max_unparsable)


def _http_url(value: str) -> str:
    from kick_hub.scoring.judge import check_base_url

    try:
        return check_base_url(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an http:// or https:// URL with a host, got {value!r}") from None


def _judge_prompt(value: str) -> str:
    from kick_hub.scoring.judge import prompt_names

    if value not in prompt_names():
        raise argparse.ArgumentTypeError(f"must be one of {prompt_names()}, got {value!r}")
    return value


def _share(value: str) -> float:
    try:
        r = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {value!r}") from None
    if not 0 <= r <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value!r}")
    return r


def _add_judge_options(p: argparse.ArgumentParser) -> None:
    d = _JUDGE_DEFAULTS  # every --judge-* option needs --judge (``_judges``)
    p.add_argument("--judge", default=None, help="'openai:<model>' or 'transformers:<model>' for icsum and "
                   "instruction-following (exit 2 when no selected task is one of them)")
    p.add_argument("--judge-base-url", type=_http_url, default=d["judge_base_url"],
                   help="OpenAI-compatible endpoint (http:// or https://) for --judge openai:...")
    p.add_argument("--judge-api-key-env", default=d["judge_api_key_env"], help="env var holding the judge key "
                   "(must be set; any value for a server without authentication)")
    p.add_argument("--judge-prompt", type=_judge_prompt, default=d["judge_prompt"], help="judge prompt name "
                   "(default per task; icsum: summary-v1; instruction-following: pairwise-v1 or single-v1)")
    p.add_argument("--judge-concurrency", type=_positive_int, default=d["judge_concurrency"], help="judge requests "
                   "in flight at once (openai), or prompts per generate batch (transformers); default 8")
    p.add_argument("--judge-rpm", type=_positive_int, default=d["judge_rpm"], help="at most this many judge "
                   "requests a minute, retries included (openai; default: no limit)")
    p.add_argument("--judge-retries", type=_nonneg_int, default=d["judge_retries"], help="retries of a failed judge "
                   "request (429, 5xx, timeout, dropped connection), with exponential backoff; default 4")
    p.add_argument("--judge-no-cache", action="store_true", help="ask the judge again instead of reusing cached "
                   "verdicts (the fresh ones replace them in the cache)")
    p.add_argument("--judge-max-unparsable", type=_share, default=d["judge_max_unparsable"], help="fail a judged "
                   "task when more than this share of the judge's replies cannot be parsed (default 0.5)")


def build_parser() -> argparse.ArgumentParser:
    """The ``kick`` argument parser: one subcommand per ``cmd_*`` function, set as ``func``; option values are
    checked while parsing (argparse exits 2 on a bad one)."""
    parser = argparse.ArgumentParser(prog="kick", description="LLM-KICK for the Hugging Face ecosystem: what does "
                                     "compression do to an LLM's knowledge?")
    sub = parser.add_subparsers(dest="command", required=True)

    world = sub.add_parser("world", help="the embedded fact world and its model").add_subparsers(
        dest="world_command", required=True)
    p = world.add_parser("info", help="world sizes, model directory and measured scores")
    p.add_argument("--json", action="store_true", help="print JSON (keys: model_dir, params, scores, world)")
    _add_world_options(p)
    p.set_defaults(func=cmd_world_info)
    p = world.add_parser("build", help="write the world's eval sets in the real datasets' formats")
    p.add_argument("--output", type=_new_dir, required=True, help="directory to create")
    _add_world_options(p)
    p.set_defaults(func=cmd_world_build)
    from kick_hub.world.corpus import CURRICULA

    p = world.add_parser("train", help="train a world model from scratch with the one-command recipe (about 42 min on "
                         "2 cores), or run the given --phase list, from scratch or continuing an --init checkpoint")
    p.add_argument("--output", type=_new_dir, required=True, help="model directory to create")
    p.add_argument("--phase", type=_phase, action="append", metavar="CURRICULUM:STEPS[:LR]",
                   help="a training phase, repeatable, replacing the recipe; CURRICULUM is one of "
                        f"{sorted(CURRICULA)}, with the recipe's settings for it (LR overrides its learning rate)")
    p.add_argument("--init", default=None, help="continue from this checkpoint instead of starting from scratch")
    p.add_argument("--no-compile", action="store_true", help="train eagerly instead of through torch.compile")
    p.add_argument("--measure-limit", type=_positive_int, default=None, help="examples per task when measuring")
    _add_world_options(p)
    p.set_defaults(func=cmd_world_train)

    from kick_hub.tasks import TASK_NAMES

    p = sub.add_parser("evaluate", help="run a causal LM on LLM-KICK tasks")
    p.add_argument("--model", default="world", help="Hub id, local directory, or 'world' (default)")
    p.add_argument("--task", nargs="+", default=["all"], metavar="TASK",
                   help=f"one or more of {', '.join(TASK_NAMES)}, or 'all' (default)")
    p.add_argument("--data", default="world", help="'world' (default), 'world-heldout', a local file/folder or "
                   "data root (e.g. ../shared/data), 'hub' or 'hub:<dataset id>'")
    p.add_argument("--limit", type=_positive_int, default=None, help="first N examples per task")
    p.add_argument("--protocol", choices=["default", "llm-kick"], default="default",
                   help="default = corrected scoring; llm-kick = the original code's rules")
    _add_mcq_protocols(p)
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--output", type=_output_file, default=None, help="write lm-eval-style JSON to this file")
    _add_threads_option(p)
    _add_judge_options(p)
    _add_device_options(p)
    p.add_argument("--gguf-file", default=None, metavar="FILE.gguf", help="with a Hub id or directory as --model: "
                   "the GGUF file in it to run in llama.cpp (a .gguf path as --model needs none; docs/gguf.md)")
    p.set_defaults(func=cmd_evaluate)

    from kick_hub.compress import GPTQ_BITS, METHODS

    p = sub.add_parser("compress", help="prune or quantize a model into a loadable variant directory")
    p.add_argument("--model", default="world", help="Hub id, local directory, or 'world' (default)")
    p.add_argument("--method", required=True, metavar="METHOD", help=f"one of {', '.join(METHODS)}, an installed "
                   "method plugin's name (entry points of group kick_hub.methods) or package.module:name")
    p.add_argument("--method-arg", type=_method_arg, action="append", metavar="KEY=VALUE", help="a method "
                   "plugin's parameter (repeatable), typed and checked by the plugin")
    p.add_argument("--sparsity", type=_ratio, default=None, help="unstructured ratio in [0, 1)")
    p.add_argument("--pattern", default=None, help="N:M semi-structured pattern: N of every M consecutive weights "
                   "are pruned (2:4 and 4:8 = 50 %% sparsity, 3:4 = 75 %%)")
    p.add_argument("--quant-type", default=None, metavar="TYPE", help="gguf: llama.cpp's quant type, e.g. Q8_0, "
                   "Q6_K, Q5_K_M, Q4_K_M, Q3_K_M, Q2_K, IQ4_XS (docs/gguf.md)")
    p.add_argument("--bits", type=int, default=None, help=f"GPTQ bits, one of {list(GPTQ_BITS)} (awq: 4, the "
                   "default)")
    p.add_argument("--group-size", type=int, default=128, help="GPTQ group size (-1 = per row)")
    p.add_argument("--desc-act", action="store_true", help="GPTQ act-order")
    p.add_argument("--asym", action="store_true", help="GPTQ asymmetric quantization")
    p.add_argument("--damp", type=float, default=0.01, help="Hessian dampening (SparseGPT / GPTQ)")
    p.add_argument("--blocksize", type=_positive_int, default=128, help="SparseGPT columns per block")
    p.add_argument("--calibration", default="world", help="c4 | wikitext2 | world (default) | PATH "
                   "(.txt, or .pt/.safetensors ids [nsamples, seqlen])")
    p.add_argument("--nsamples", type=_positive_int, default=None,
                   help="calibration rows (default: 128; for a .pt/.safetensors file, its rows)")
    p.add_argument("--seqlen", type=_positive_int, default=None,
                   help="calibration tokens per row (default: min(2048, model context); for a .pt/.safetensors "
                        "file, its row length)")
    p.add_argument("--seed", type=_nonneg_int, default=0)
    p.add_argument("--output", type=_writable_file, required=True, help="variant directory to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    _add_threads_option(p)
    p.add_argument("--storage", choices=["dense", "sparse"], default="dense", help="sparse: pruned weights in "
                   "the sparse-bitmask layout (loads after `import kick_hub.formats.sparse_bitmask`)")
    _add_device_options(p, device_map=False)
    p.set_defaults(func=cmd_compress)

    from kick_hub.bench import plan

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
    p.add_argument("--private", action="store_true", help="make pushed repos private (an existing public one "
                   "is switched before any upload; exit 2 if it cannot be)")
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

    p = sub.add_parser("push", help="upload a variant with its model card to a Hub model repo (one commit)")
    p.add_argument("variant", help="variant directory written by kick compress or kick bench")
    p.add_argument("--repo-id", required=True, help="ORG/NAME")
    p.add_argument("--private", action="store_true",
                   help="make the repo private (an existing public one is switched before any upload; exit 2 "
                        "if it cannot be)")
    p.add_argument("--run-dir", default=None, help="a kick bench run dir: adds results vs dense and plots to the card")
    p.add_argument("--base-model", default=None, help="Hub id of the base model for the card (default: manifest's)")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("publish-tasks", help="publish every evaluate module as a Space (evaluate.load('ORG/task'))")
    p.add_argument("--org", default="llmkick")
    p.add_argument("--tasks", nargs="+", default=None, metavar="TASK", help=f"subset of {', '.join(TASK_NAMES)}")
    p.add_argument("--private", action="store_true",
                   help="make the repo private (an existing public one is switched before any upload; exit 2 "
                        "if it cannot be)")
    p.set_defaults(func=cmd_publish_tasks)

    p = sub.add_parser("space", help="serve the comparison app (the Space) locally")
    p.add_argument("--run-dir", default=None, help="a kick bench run dir (its variants become choosable)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_positive_int, default=7860)
    p.add_argument("--allow", nargs="*", default=[], metavar="REPO_ID", help="Hub repo ids users may load")
    p.add_argument("--data", nargs="+", default=["world"], help="example sources (world, world-heldout, a data root)")
    p.add_argument("--results-repo", default=None, help="results dataset repo for the leaderboard")
    _add_threads_option(p)
    _add_device_options(p)
    p.set_defaults(func=cmd_space)

    p = sub.add_parser("publish-space", help="put the comparison app (space/) on the Hub as a Gradio Space")
    p.add_argument("repo_id", metavar="ORG/NAME", help="the Space to create or update")
    p.add_argument("--allow", nargs="+", action="extend", default=[], metavar="ORG/REPO",
                   help="Hub model repos visitors may load (the Space's KICK_ALLOW)")
    p.add_argument("--results-repo", default=None, metavar="ORG/NAME",
                   help="results dataset repo for the leaderboard (KICK_RESULTS_REPO)")
    p.add_argument("--hardware", default=None, metavar="FLAVOR",
                   help="Space hardware to request: cpu-basic, zero-a10g, t4-small, a10g-small, ... (huggingface_hub's "
                   "SpaceHardware)")
    p.add_argument("--private", action="store_true",
                   help="make the Space private (an existing public one is switched before any upload; exit 2 "
                        "if it cannot be)")
    p.set_defaults(func=cmd_publish_space)

    p = sub.add_parser("push-results", help="add a run's results to a Hub dataset repo (one JSON per run)")
    p.add_argument("run_dir", help="a kick bench run dir")
    p.add_argument("--repo-id", required=True, help="ORG/NAME of the dataset repo")
    p.add_argument("--private", action="store_true",
                   help="make the repo private (an existing public one is switched before any upload; exit 2 "
                        "if it cannot be)")
    p.set_defaults(func=cmd_push_results)

    p = sub.add_parser("sparsity", help="check a variant's per-layer sparsity against its manifest")
    p.add_argument("variant", help="variant directory")
    p.add_argument("--verbose", action="store_true", help="print every layer")
    p.set_defaults(func=cmd_sparsity)

    # lm-evaluation-harness (kick_hub.harness, docs/lm-eval.md)
    p = sub.add_parser("lm-eval-tasks", help="write the LLM-KICK tasks as lm-evaluation-harness task YAMLs")
    p.add_argument("--output", type=_writable_dir, required=True, help="folder for the YAMLs and their utils.py "
                   "(lm_eval --include_path)")
    p.add_argument("--data", default="world", help="the tasks' data, as for kick evaluate: world (default), "
                   "world-heldout, a local file, folder or data root, hub or hub:<dataset id>; each task's data is "
                   "loaded first (tasks a local source lacks are left out, with a note)")
    p.set_defaults(func=cmd_lm_eval_tasks)
    p = sub.add_parser("judge", help="judge the generations lm-eval logged (--log_samples) for icsum or "
                       "instruction-following")
    p.add_argument("samples", help="an lm-eval samples_<task>_<time>.jsonl of llmkick_icsum* or "
                   "llmkick_instruction_following*")
    p.add_argument("--output", default=None, help="where to write (default: judge_<task>_<time>.json beside the "
                   "samples, where kick import-lm-eval reads it)")
    _add_judge_options(p)
    p.set_defaults(func=cmd_judge)
    p = sub.add_parser("import-lm-eval", help="put lm-eval results of the LLM-KICK tasks into a sweep store")
    p.add_argument("results", help="lm-eval's --output_path folder (holding one results_<time>.json) or the "
                   "results file")
    p.add_argument("--run-dir", type=_writable_dir, required=True,
                   help="the sweep's run dir (its store is created when missing)")
    p.add_argument("--label", required=True, help="the cell: dense, or a kick variant's label (its manifest's)")
    p.add_argument("--protocol", choices=["default", "llm-kick"], default="default",
                   help="import the tasks of this protocol (llmkick_* or llmkick_*_llm_kick)")
    p.add_argument("--tasks", nargs="+", default=None, metavar="TASK", help="tasks that must be there (default: "
                   "every LLM-KICK task the run has)")
    p.add_argument("--model", default=None, help="the model name to record (default: lm-eval's pretrained, "
                   "'world' for the world model, a kick variant's base model)")
    p.add_argument("--allow-sampling", action="store_true", help="import a run whose generations sampled "
                   "(do_sample, temperature > 0) or searched beams; its --label must contain 'sampled' (without "
                   "this such a run is refused: kick's results are greedy)")
    p.set_defaults(func=cmd_import_lm_eval)
    return parser


def cmd_lm_eval_tasks(args) -> int:
    """``kick lm-eval-tasks``: write the task YAMLs (``kick_hub.harness.export``); needs no lm-eval."""
    from kick_hub.harness.export import export

    written = export(args.output, args.data)
    tasks = [p.stem for p in written if p.suffix == ".yaml"]
    run = "llmkick" if "llmkick" in tasks else ",".join(tasks)
    print(f"wrote {len(tasks)} lm-eval task and group YAMLs and utils.py to {args.output}; run them with:\n"
          f"  lm_eval --model hf --model_args pretrained=MODEL --include_path {args.output} --tasks {run} "
          f"--log_samples --output_path OUT")
    return 0


def cmd_judge(args) -> int:
    """``kick judge SAMPLES``: kick's judge on lm-eval's logged generations (``kick_hub.harness.judge_samples``);
    the samples file and ``--output`` are checked before the judge is built."""
    from kick_hub.harness import by_name
    from kick_hub.harness.judge_samples import check_output, judge_file, judge_output_path, read_samples
    from kick_hub.scoring.judge.cache import FILENAME as JUDGE_CACHE

    name, _, _ = read_samples(args.samples)
    task = by_name()[name].task
    output = check_output(args.output if args.output else judge_output_path(Path(args.samples)))
    if not args.judge:
        raise ValueError("judge: required ('openai:<model>' or 'transformers:<model>')")
    judges = _judges(args, [task], output.parent / JUDGE_CACHE)
    path, out = judge_file(args.samples, judges[task], output)
    print("\n".join(f"{k}: {v}" for k, v in out["scores"].items()))
    print(f"wrote {path}")
    return 0


def cmd_import_lm_eval(args) -> int:
    """``kick import-lm-eval``: lm-eval results as one cell of a sweep store (``kick_hub.harness.importer``); every
    check runs before the store is written."""
    from kick_hub.harness.importer import import_run

    written = import_run(args.results, args.run_dir, args.label, args.protocol, args.tasks, args.model,
                         args.allow_sampling)
    print(f"imported {', '.join(written) or 'nothing new'} as {args.label!r} into {args.run_dir}")
    return 0


def _read_only_error(error: BaseException) -> str | None:
    """The one line for an OSError in ``error``'s chain that is a write to a read-only filesystem (EROFS): the
    path, and where the kick-hub cache is set when the path is in it; None for any other error."""
    import errno

    from kick_hub.models import cache_root

    while error is not None and not (isinstance(error, OSError) and error.errno == errno.EROFS):
        error = error.__cause__ or error.__context__
    if error is None:
        return None
    path = error.filename or "a file"
    hint = ""
    if error.filename and Path(cache_root()).resolve() in [Path(path).resolve(), *Path(path).resolve().parents]:
        hint = "; it is in kick-hub's cache: set KICK_HUB_CACHE to a writable folder"
    return f"cannot write {path}: read-only file system{hint}"


def main(argv: list[str] | None = None) -> int:
    """Run ``kick`` with ``argv`` (default ``sys.argv[1:]``) and return the command's exit status. ValueError,
    PermissionError, ImportError, a full disk (``io.no_space``) and a read-only filesystem exit 2 and ``hub.HubError`` /
    ``scoring.judge.JudgeError`` exit 1, each as one ``kick: error:`` line on stderr (SystemExit); Ctrl-C returns
    130 after one ``kick: interrupted`` line; any other exception propagates."""
    from kick_hub import _quiet

    _quiet.install()  # drop torchao's / torch's start-up noise (kick_hub/_quiet.py); real warnings still show
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:  # one line, the shell's status for SIGINT; what was being written is left as it was
        print("kick: interrupted", file=sys.stderr)
        return 130
    except (ValueError, PermissionError, ImportError) as e:
        parser.exit(2, f"kick: error: {e}\n")
    except Exception as e:
        from kick_hub.hub import HubError
        from kick_hub.io import no_space, no_space_message
        from kick_hub.scoring.judge import JudgeError

        if isinstance(e, (HubError, JudgeError)):
            parser.exit(1, f"kick: error: {e}\n")
        if no_space(e):  # a write outside the atomic writers (SQLite store, plots) hit a full disk
            parser.exit(2, f"kick: error: {no_space_message(None, e)}\n")
        read_only = _read_only_error(e)
        if read_only is not None:  # a write the up-front checks do not cover (a cache) on read-only media
            parser.exit(2, f"kick: error: {read_only}\n")
        raise


if __name__ == "__main__":
    sys.exit(main())
