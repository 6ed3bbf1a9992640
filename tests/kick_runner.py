"""The one way tests run the ``kick`` CLI: in this process by default, a fresh interpreter where a test needs one.

In this process ``kick_hub.cli.main(argv)`` runs with stdout/stderr captured, ``env`` applied to ``os.environ``
and ``cwd`` to the working directory for the call only, torch's thread count restored afterwards (``--threads``
sets it), and an uncaught exception turned into exit status 1 with its traceback on stderr, as a fresh
``python -m kick_hub.cli`` would show it. That skips the interpreter start and the torch / transformers imports
(seconds a call) and keeps the world model's files in the page cache.

A test needs ``subprocess=True`` when what it checks lives in a process of its own: signals (SIGINT, SIGKILL),
two processes at once (locks), variables read when a library is imported (HF_ENDPOINT, HF_HUB_OFFLINE in
huggingface_hub.constants, OMP_NUM_THREADS in torch), the warnings and log lines an interpreter prints while it
imports torch (pytest records warnings itself), the real ``python -m kick_hub.cli`` entry point, or a Ray driver.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal as _signal
import subprocess as _subprocess
import sys
import traceback
from typing import NamedTuple

TOKEN = "hf_kick_secret_token_0123456789"  # the loopback Hub's token (the ``hub`` fixture); never in any output


class Run(NamedTuple):
    """What one ``kick`` run gave, shaped like ``subprocess.CompletedProcess`` (``.returncode``, ``.stdout``,
    ``.stderr``) and unpackable as ``code, out, err = kick(...)``."""

    returncode: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def _environment(env: dict | None, cwd) -> None:
    """Apply ``env`` (a value of ``None`` removes the variable) and ``cwd`` for the duration; restore both."""
    saved = {key: os.environ.get(key) for key in (env or {})}
    here = os.getcwd()
    try:
        for key, value in (env or {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if cwd is not None:
            os.chdir(cwd)
        yield
    finally:
        os.chdir(here)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _in_process(argv: list[str], env: dict | None, cwd) -> Run:
    import torch

    from kick_hub.cli import main

    threads = torch.get_num_threads()
    out, err = io.StringIO(), io.StringIO()
    with _environment(env, cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # parser.exit(2, "kick: error: ...") and --help, as the interpreter reads them
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except Exception:  # what the interpreter does with an uncaught exception
            traceback.print_exc()
            code = 1
        finally:
            torch.set_num_threads(threads)  # --threads / OMP_NUM_THREADS set it for the run only
    return Run(int(code or 0), out.getvalue(), err.getvalue())


def kick(*args: str, env: dict | None = None, cwd=None, check: bool = False, subprocess: bool = False,
         wait: bool = True, capture: bool = True, timeout: float = 600):
    """Run ``kick *args``; returns a :class:`Run` (exit status, stdout, stderr). ``check=True`` asserts the exit
    status is 0 (the assertion shows the end of stderr); otherwise a non-zero exit is returned, never raised.

    ``env`` adds to (``None`` removes from) this process's environment, ``cwd`` sets the working directory.
    ``subprocess=True`` runs ``python -m kick_hub.cli`` in a fresh interpreter, killed after ``timeout`` seconds
    (a bound that only catches a hang). ``wait=False`` starts that interpreter and returns its ``subprocess.Popen``
    (text pipes, or ``/dev/null`` with ``capture=False``) for a test that signals or races it.
    """
    argv = [str(a) for a in args]
    if wait and not subprocess:
        return _checked(_in_process(argv, env, cwd), check)
    child = {**os.environ}
    for key, value in (env or {}).items():
        if value is None:
            child.pop(key, None)
        else:
            child[key] = value
    cmd = [sys.executable, "-m", "kick_hub.cli", *argv]
    if not wait:
        pipe = _subprocess.PIPE if capture else _subprocess.DEVNULL
        # SIGINT as a terminal delivers it: a shell starts background jobs (a test run started with `&`, some CI
        # runners) with SIGINT ignored, a disposition children inherit, and Python then installs no Ctrl-C handler
        return _subprocess.Popen(cmd, stdout=pipe, stderr=pipe, text=True, env=child, cwd=cwd,
                                 preexec_fn=lambda: _signal.signal(_signal.SIGINT, _signal.SIG_DFL))
    done = _subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=child, cwd=cwd)
    return _checked(Run(done.returncode, done.stdout, done.stderr), check)


def _checked(run: Run, check: bool) -> Run:
    if check:
        assert run.returncode == 0, f"exit {run.returncode}:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    return run


def hub_kick(hub, *args: str, env: dict | None = None, expect: int = 0, timeout: float = 600) -> Run:
    """Run ``kick *args`` against the loopback Hub ``hub`` (tests/hub_server.py) and check its exit status is
    ``expect`` and that the token shows nowhere in its output.

    Always a fresh interpreter (``run_client``): huggingface_hub reads HF_ENDPOINT and the offline switches when it
    is imported, so this process (offline, no endpoint) cannot reach the Hub. ``env`` as in ``run_client``.
    """
    from tests.hub_server import run_client

    code = f"import sys\nfrom kick_hub.cli import main\nsys.exit(main({[str(a) for a in args]!r}))"
    proc = run_client(hub, code, env=env, timeout=timeout)
    assert proc.returncode == expect, f"exit {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert hub.token not in proc.stdout + proc.stderr
    return Run(proc.returncode, proc.stdout, proc.stderr)


def client(hub, code: str, env: dict | None = None, timeout: float = 600) -> dict:
    """Run ``code`` with the real Hugging Face clients against ``hub`` in a fresh interpreter; it must call
    ``emit(obj)`` (JSON-able) at least once; returns the last ``obj``. The token must show nowhere in the output."""
    import json
    import textwrap

    from tests.hub_server import run_client

    prelude = "import json\ndef emit(obj):\n    print('RESULT ' + json.dumps(obj))\n"
    proc = run_client(hub, prelude + textwrap.dedent(code), env=env, timeout=timeout)
    assert proc.returncode == 0, f"client failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    assert hub.token not in proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(lines[-1][len("RESULT "):])
