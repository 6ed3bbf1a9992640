"""``kick evaluate``: run a model on the LLM-KICK tasks (``kick_hub.evaluation``)."""

from __future__ import annotations

import argparse
import sys

from kick_hub.cli.options import (_add_device_options, _add_judge_options, _add_mcq_protocols, _add_threads_option,
                                  _check_mcq_protocols, _judges, _output_file, _placement, _positive_int)


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


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    """The ``evaluate`` command."""
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
