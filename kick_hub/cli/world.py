"""``kick world info|build|train``: the embedded fact world and its model (``kick_hub.world``)."""

from __future__ import annotations

import argparse

from kick_hub.cli.options import _new_dir, _nonneg_int, _positive_int


def _phase(spec: str):
    """``CURRICULUM:STEPS[:LR]`` -> a train.Phase (``world.train.parse_phase``)."""
    from kick_hub.world.train import parse_phase

    try:
        return parse_phase(spec)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _world_config(args):
    from kick_hub.world.generate import WorldConfig

    fields = ("seed", "n_known", "n_unseen", "n_reading", "n_cities", "n_countries", "n_companies")
    return WorldConfig(**{f: getattr(args, f) for f in fields if getattr(args, f, None) is not None})


def _add_world_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=_nonneg_int, default=None, help="world seed (default 0)")
    for name in ("known", "unseen", "reading", "cities", "countries", "companies"):
        p.add_argument(f"--n-{name}", dest=f"n_{name}", type=int, default=None, help=f"number of {name}")


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


def add_world(sub: argparse._SubParsersAction) -> None:
    """The ``world`` command and its ``info``, ``build`` and ``train`` subcommands."""
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
