"""The argparse types and option adders that more than one ``kick`` command shares: numbers, task limits and
paths (a real write probe, so read-only media fail before any work), ``--threads``, ``--method-arg``,
``--mcq-protocols``, the device options and the ``Placement`` they make, and the judge options and the judges they
make. Only the standard library is imported here; the library is imported inside the functions that need it."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path


def _int_at_least(minimum: int, words: str):
    """An argparse type: an integer of at least ``minimum``, else "must be ``words``, got ..."."""
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {words}, got {value!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"must be {words}, got {value!r}")
        return n

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_nonneg_int = _int_at_least(0, "a non-negative integer")


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


def add_private_option(p: argparse.ArgumentParser, what: str = "the repo") -> None:
    """``--private``: make ``what`` private on the Hub; an existing public repo is switched before any upload, and
    the command exits 2 when it cannot be."""
    p.add_argument("--private", action="store_true", help=f"make {what} private (an existing public one is switched "
                   "before any upload; exit 2 if it cannot be)")
