"""The lm-evaluation-harness commands (``kick_hub.harness``, docs/lm-eval.md): ``kick lm-eval-tasks`` writes the
LLM-KICK tasks as lm-eval task YAMLs, ``kick import-lm-eval`` puts lm-eval's results into a sweep store
(``kick judge``, which judges lm-eval's logged generations, is ``cli/judge.py``)."""

from __future__ import annotations

import argparse

from kick_hub.cli.options import _writable_dir


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


def cmd_import_lm_eval(args) -> int:
    """``kick import-lm-eval``: lm-eval results as one cell of a sweep store (``kick_hub.harness.importer``); every
    check runs before the store is written."""
    from kick_hub.harness.importer import import_run

    written = import_run(args.results, args.run_dir, args.label, args.protocol, args.tasks, args.model,
                         args.allow_sampling)
    print(f"imported {', '.join(written) or 'nothing new'} as {args.label!r} into {args.run_dir}")
    return 0


def add_lm_eval_tasks(sub: argparse._SubParsersAction) -> None:
    """The ``lm-eval-tasks`` command."""
    p = sub.add_parser("lm-eval-tasks", help="write the LLM-KICK tasks as lm-evaluation-harness task YAMLs")
    p.add_argument("--output", type=_writable_dir, required=True, help="folder for the YAMLs and their utils.py "
                   "(lm_eval --include_path)")
    p.add_argument("--data", default="world", help="the tasks' data, as for kick evaluate: world (default), "
                   "world-heldout, a local file, folder or data root, hub or hub:<dataset id>; each task's data is "
                   "loaded first (tasks a local source lacks are left out, with a note)")
    p.set_defaults(func=cmd_lm_eval_tasks)


def add_import_lm_eval(sub: argparse._SubParsersAction) -> None:
    """The ``import-lm-eval`` command."""
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
