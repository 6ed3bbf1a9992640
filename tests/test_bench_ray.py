"""`kick bench --executor ray` on a real local Ray cluster (2 CPUs, 127.0.0.1, no dashboard): the same rows as a
local sweep, a SIGKILLed worker's cell retried, a SIGKILLed driver resumed, and bad input refused with exit 2."""

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from kick_hub.bench import plan, sweep
from kick_hub.bench.store import FILENAME, Store
from tests.kick_runner import kick

pytest.importorskip("ray")

TASKS = ["factoid-qa", "mcq-reasoning"]
LIMITS = ["--limit", "8", "--nsamples", "8", "--seqlen", "128"]
ARGS = ["--methods", "magnitude", "wanda", "--sparsities", "0.3", "0.6", "--patterns", "--bits", "--tasks", *TASKS,
        *LIMITS]
MAGNITUDE = ["--methods", "magnitude", "--sparsities", "0.3", "0.6", "--patterns", "--bits", "--tasks", *TASKS,
             "--limit", "8"]  # magnitude reads no calibration: --nsamples / --seqlen would be refused


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """A Ray head on 127.0.0.1 with 2 CPUs and no dashboard, for this module; its address (HOST:PORT)."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="kray-", dir="/tmp")  # short: Ray's socket paths live under it
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
         "--port", str(port), "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "false",
         "--disable-usage-stats", "--temp-dir", temp],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"})  # a token in ~/.ray would otherwise turn token auth on
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while subprocess.run([str(Path(sys.executable).parent / "ray"), "status", "--address", address],
                             capture_output=True, timeout=60).returncode != 0:  # the head and its node are up
            assert head.poll() is None and time.monotonic() < deadline, "the Ray head did not start"
            time.sleep(1)
        yield address
    finally:  # the head's process group: `ray start` and every Ray process it started
        try:
            os.killpg(head.pid, signal.SIGTERM)
            head.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def rows(run_dir, labels=None):
    db = sqlite3.connect(f"file:{run_dir / FILENAME}?mode=ro", uri=True)
    out = db.execute("SELECT label, task, metric, value FROM scores ORDER BY 1, 2, 3").fetchall()
    cells = db.execute("SELECT label FROM variants ORDER BY 1").fetchall()
    db.close()
    return [r for r in out if labels is None or r[0] in labels], [c[0] for c in cells]


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The same sweep with the local executor: dense, magnitude and wanda at 30 % and 60 %."""
    run_dir = tmp_path_factory.mktemp("local")
    sweep.run("world", run_dir, plan.plan(["magnitude", "wanda"], [0.3, 0.6], [], []), TASKS, limit=8, nsamples=8,
              seqlen=128, progress=False).close()
    return run_dir


def bench(*argv, wait=True, capture=False, env=None):
    """``kick bench *argv`` in a process of its own, a Ray driver as a user starts one (killed in one test); with
    ``wait=False`` its Popen (output to /dev/null unless ``capture``)."""
    return kick("bench", *argv, subprocess=True, wait=wait, capture=capture, env=env)


def test_ray_gives_the_rows_of_a_local_sweep(cluster, local, tmp_path):
    run_dir = tmp_path / "ray"
    store = sweep.run("world", run_dir, plan.plan(["magnitude", "wanda"], [0.3, 0.6], [], []), TASKS, limit=8,
                      nsamples=8, seqlen=128, progress=False, executor="ray", ray_address=cluster)
    assert store.failed() == []
    store.close()
    got, labels = rows(run_dir)
    want, want_labels = rows(local)
    assert labels == want_labels == ["dense", "magnitude-30", "magnitude-60", "wanda-30", "wanda-60"]
    assert len(got) == len(want) > 0 and got == want  # same scores, bit for bit
    assert sweep.kept_variants(run_dir) == ["magnitude-30", "magnitude-60", "wanda-30", "wanda-60"]


def _ray_pids(title: str) -> list[int]:
    """Processes whose title (Ray sets it to ``ray::<task name>`` while a task runs) is ``title``."""
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace").strip() == title:
                    out.append(int(proc.name))
            except OSError:
                pass
    return out


def test_a_killed_worker_is_retried_and_the_sweep_completes(cluster, local, tmp_path):
    run_dir = tmp_path / "kill-worker"
    proc = bench("--run-dir", run_dir, *MAGNITUDE, "--executor", "ray", "--ray-address", cluster, "--cell-retries",
                 "1", "--keep-variants", "none", wait=False, capture=True)
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        pids = _ray_pids("ray::magnitude-60")
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed = pids[0]
        time.sleep(0.05)
    out, err = proc.communicate(timeout=600)
    assert killed is not None, "the cell's worker was never seen running"
    assert proc.returncode == 0, err[-3000:]
    got, labels = rows(run_dir)
    assert labels == ["dense", "magnitude-30", "magnitude-60"]
    assert got == rows(local, labels)[0]
    store = Store(run_dir, None)
    assert store.failed() == []
    store.close()
    assert not (run_dir / "variants").exists()  # --keep-variants none: each worker deleted its variant


def test_a_cell_out_of_retries_is_recorded_and_a_rerun_retries_it(cluster, local, tmp_path):
    run_dir = tmp_path / "fail"
    argv = ["--run-dir", str(run_dir), *MAGNITUDE, "--executor", "ray", "--ray-address", cluster]
    proc = bench(*argv, "--cell-retries", "0", wait=False, capture=True)
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        pids = _ray_pids("ray::magnitude-30")
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed = pids[0]
        time.sleep(0.05)
    out, err = proc.communicate(timeout=600)
    assert killed is not None, "the cell's worker was never seen running"
    assert proc.returncode == 1, err[-3000:]  # the others finished and the report was written
    assert "failed magnitude-30 after 1 attempt(s)" in err and "1 cell(s) failed" in err
    assert rows(run_dir)[1] == ["dense", "magnitude-60"] and (run_dir / "report.md").exists()
    status = bench(*argv, "--status")
    assert re.search(r"failed magnitude-30 +after 1 attempt\(s\): WorkerCrashedError", status.stdout), status.stdout
    assert "todo  magnitude-30" in status.stdout
    rerun = bench(*argv)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    got, labels = rows(run_dir)
    assert labels == ["dense", "magnitude-30", "magnitude-60"] and got == rows(local, labels)[0]
    assert "failed" not in bench(*argv, "--status").stdout


def test_a_killed_driver_resumes_without_duplicates(cluster, local, tmp_path):
    run_dir = tmp_path / "kill-driver"
    argv = ["--run-dir", str(run_dir), *MAGNITUDE, "--executor", "ray", "--ray-address", cluster]
    proc = bench(*argv, wait=False)
    deadline = time.monotonic() + 300
    n = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if (run_dir / FILENAME).exists():
            try:
                n = len(rows(run_dir)[1])
            except sqlite3.OperationalError:
                n = 0
            if n >= 1:
                break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = rows(run_dir)[1]
    assert 1 <= len(partial) < 3
    out = bench(*argv)
    assert out.returncode == 0, out.stderr[-3000:]
    got, labels = rows(run_dir)
    assert labels == ["dense", "magnitude-30", "magnitude-60"]
    assert set(partial) <= set(labels)
    assert got == rows(local, labels)[0]  # nothing lost, nothing twice
    status = bench("--run-dir", str(run_dir), *MAGNITUDE, "--status")
    assert "3 cells done, variants kept: 2 of 2" in status.stdout and "todo" not in status.stdout


def test_bad_ray_input_exits_2_before_any_work(cluster, tmp_path):
    start = time.monotonic()
    out = bench("--run-dir", str(tmp_path / "a"), *ARGS, "--executor", "ray", "--ray-address",
                f"127.0.0.1:{_free_port()}")
    assert out.returncode == 2 and "ray-address: cannot reach the Ray cluster at 127.0.0.1:" in out.stderr
    assert time.monotonic() - start < 120
    out = bench("--run-dir", str(tmp_path / "b"), *ARGS, "--executor", "ray", "--ray-address", cluster,
                "--cell-gpus", "1")
    assert out.returncode == 2, out.stderr[-2000:]
    assert "cell-gpus: no node of the Ray cluster has 1 GPU(s) (cluster resources: 2 CPU, 0 GPU" in out.stderr
    shadow = tmp_path / "no-ray"  # an interpreter where `import ray` fails, as where Ray is not installed
    (shadow / "ray").mkdir(parents=True)
    (shadow / "ray" / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    env = {"PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}
    out = bench("--run-dir", tmp_path / "c", "--executor", "ray", env=env)
    assert out.returncode == 2 and 'pip install "kick-hub[ray]"' in out.stderr
    for name in "abc":
        assert not (tmp_path / name / FILENAME).exists()
