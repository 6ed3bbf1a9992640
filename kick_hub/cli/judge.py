"""``kick judge``: kick's judge on the generations lm-eval logged (``kick_hub.harness.judge_samples``); the
``--judge*`` options and the judges they make are ``cli/options.py``'s."""

from __future__ import annotations

import argparse
from pathlib import Path

from kick_hub.cli.options import _add_judge_options, _judges


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


def add_judge(sub: argparse._SubParsersAction) -> None:
    """The ``judge`` command."""
    p = sub.add_parser("judge", help="judge the generations lm-eval logged (--log_samples) for icsum or "
                       "instruction-following")
    p.add_argument("samples", help="an lm-eval samples_<task>_<time>.jsonl of llmkick_icsum* or "
                   "llmkick_instruction_following*")
    p.add_argument("--output", default=None, help="where to write (default: judge_<task>_<time>.json beside the "
                   "samples, where kick import-lm-eval reads it)")
    _add_judge_options(p)
    p.set_defaults(func=cmd_judge)
