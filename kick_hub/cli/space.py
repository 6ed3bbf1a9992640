"""``kick space``: serve the comparison app (``kick_hub.space``) locally."""

from __future__ import annotations

import argparse

from kick_hub.cli.options import _add_device_options, _add_threads_option, _placement, _positive_int


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


def add_space(sub: argparse._SubParsersAction) -> None:
    """The ``space`` command."""
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
