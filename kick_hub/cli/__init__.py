"""The ``kick`` command: parses, validates, calls the library. No logic of its own.

One module per command group, each holding its commands' ``cmd_*`` functions and an ``add_<command>(sub)`` that adds
the command's parser: ``world`` (world info / build / train), ``evaluate``, ``compress`` (compress, sparsity),
``bench``, ``hub`` (push, publish-tasks, publish-space, push-results), ``space``, ``harness`` (lm-eval-tasks,
import-lm-eval) and ``judge``; ``options`` holds the argparse types and option adders they share (numbers, paths,
threads, device and placement, judge), ``errors`` the one line for a read-only filesystem. Here: ``build_parser``
and ``main`` (``__main__.py`` runs it for ``python -m kick_hub.cli``). The modules import only the standard library
at load time and the library inside their functions, so ``kick --help`` imports no torch.
"""

from __future__ import annotations

import argparse
import sys

from kick_hub.cli.bench import add_bench, cmd_bench
from kick_hub.cli.compress import add_compress, add_sparsity, cmd_compress, cmd_sparsity, compress_spec
from kick_hub.cli.errors import _read_only_error
from kick_hub.cli.evaluate import add_evaluate, cmd_evaluate
from kick_hub.cli.harness import add_import_lm_eval, add_lm_eval_tasks, cmd_import_lm_eval, cmd_lm_eval_tasks
from kick_hub.cli.hub import (add_publish_space, add_publish_tasks, add_push, add_push_results, cmd_publish_space,
                              cmd_publish_tasks, cmd_push, cmd_push_results)
from kick_hub.cli.judge import add_judge, cmd_judge
from kick_hub.cli.space import add_space, cmd_space
from kick_hub.cli.world import add_world, cmd_world_build, cmd_world_info, cmd_world_train
# re-exported: the tests import these from kick_hub.cli
from kick_hub.cli.options import _JUDGE_DEFAULTS, _judges  # noqa: F401
from kick_hub.cli.world import _phase  # noqa: F401

__all__ = ["build_parser", "main", "compress_spec", "cmd_bench", "cmd_compress", "cmd_evaluate", "cmd_import_lm_eval",
           "cmd_judge", "cmd_lm_eval_tasks", "cmd_publish_space", "cmd_publish_tasks", "cmd_push", "cmd_push_results",
           "cmd_space", "cmd_sparsity", "cmd_world_build", "cmd_world_info", "cmd_world_train"]


def build_parser() -> argparse.ArgumentParser:
    """The ``kick`` argument parser: one subcommand per ``cmd_*`` function, set as ``func``; option values are
    checked while parsing (argparse exits 2 on a bad one)."""
    parser = argparse.ArgumentParser(prog="kick", description="LLM-KICK for the Hugging Face ecosystem: what does "
                                     "compression do to an LLM's knowledge?")
    sub = parser.add_subparsers(dest="command", required=True)
    # in this order in ``kick --help``
    add_world(sub)
    add_evaluate(sub)
    add_compress(sub)
    add_bench(sub)
    add_push(sub)
    add_publish_tasks(sub)
    add_space(sub)
    add_publish_space(sub)
    add_push_results(sub)
    add_sparsity(sub)
    add_lm_eval_tasks(sub)
    add_judge(sub)
    add_import_lm_eval(sub)
    return parser


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
