"""The commands that write to the Hub (``kick_hub.hub``): ``kick push`` (a variant), ``kick push-results`` (a run's
results), ``kick publish-tasks`` (the evaluate modules) and ``kick publish-space`` (the comparison app)."""

from __future__ import annotations

import argparse

from kick_hub.cli.options import add_private_option


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


def add_push(sub: argparse._SubParsersAction) -> None:
    """The ``push`` command."""
    p = sub.add_parser("push", help="upload a variant with its model card to a Hub model repo (one commit)")
    p.add_argument("variant", help="variant directory written by kick compress or kick bench")
    p.add_argument("--repo-id", required=True, help="ORG/NAME")
    add_private_option(p)
    p.add_argument("--run-dir", default=None, help="a kick bench run dir: adds results vs dense and plots to the card")
    p.add_argument("--base-model", default=None, help="Hub id of the base model for the card (default: manifest's)")
    p.set_defaults(func=cmd_push)


def add_publish_tasks(sub: argparse._SubParsersAction) -> None:
    """The ``publish-tasks`` command."""
    from kick_hub.tasks import TASK_NAMES

    p = sub.add_parser("publish-tasks", help="publish every evaluate module as a Space (evaluate.load('ORG/task'))")
    p.add_argument("--org", default="llmkick")
    p.add_argument("--tasks", nargs="+", default=None, metavar="TASK", help=f"subset of {', '.join(TASK_NAMES)}")
    add_private_option(p)
    p.set_defaults(func=cmd_publish_tasks)


def add_publish_space(sub: argparse._SubParsersAction) -> None:
    """The ``publish-space`` command."""
    p = sub.add_parser("publish-space", help="put the comparison app (space/) on the Hub as a Gradio Space")
    p.add_argument("repo_id", metavar="ORG/NAME", help="the Space to create or update")
    p.add_argument("--allow", nargs="+", action="extend", default=[], metavar="ORG/REPO",
                   help="Hub model repos visitors may load (the Space's KICK_ALLOW)")
    p.add_argument("--results-repo", default=None, metavar="ORG/NAME",
                   help="results dataset repo for the leaderboard (KICK_RESULTS_REPO)")
    p.add_argument("--hardware", default=None, metavar="FLAVOR",
                   help="Space hardware to request: cpu-basic, zero-a10g, t4-small, a10g-small, ... (huggingface_hub's "
                   "SpaceHardware)")
    add_private_option(p, "the Space")
    p.set_defaults(func=cmd_publish_space)


def add_push_results(sub: argparse._SubParsersAction) -> None:
    """The ``push-results`` command."""
    p = sub.add_parser("push-results", help="add a run's results to a Hub dataset repo (one JSON per run)")
    p.add_argument("run_dir", help="a kick bench run dir")
    p.add_argument("--repo-id", required=True, help="ORG/NAME of the dataset repo")
    add_private_option(p)
    p.set_defaults(func=cmd_push_results)
