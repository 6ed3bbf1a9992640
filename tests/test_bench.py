"""`kick bench`: resumable after SIGKILL, one transaction per cell, report and findings from the numbers."""

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from kick_hub.bench import analysis, report
from kick_hub.bench.store import FILENAME, Store, StoreError
from tests.kick_runner import kick

SMALL = ["--methods", "magnitude", "wanda", "--sparsities", "0.3", "0.6", "--patterns", "2:4", "--bits",
         "--tasks", "factoid-qa", "icra-qa", "perplexity", "--limit", "24", "--nsamples", "8", "--seqlen", "128"]


def bench(run_dir, *extra, wait=True):
    """The SMALL sweep in this process (exit 0 asserted), or with ``wait=False`` a process of its own to kill."""
    if not wait:
        return kick("bench", "--run-dir", run_dir, *SMALL, *extra, wait=False, capture=False)
    return kick("bench", "--run-dir", run_dir, *SMALL, *extra, check=True)


def scores(run_dir):
    db = sqlite3.connect(run_dir / FILENAME)
    rows = db.execute("SELECT label, task, metric, value FROM scores ORDER BY 1, 2, 3").fetchall()
    labels = db.execute("SELECT label FROM variants").fetchall()
    db.close()
    return rows, [l[0] for l in labels]


def test_kill_and_resume_equals_uninterrupted(tmp_path):
    clean = tmp_path / "clean"
    bench(clean)
    killed = tmp_path / "killed"
    proc = bench(killed, wait=False)
    deadline = time.time() + 600
    while time.time() < deadline:  # kill once at least two cells are committed, mid-sweep
        if (killed / FILENAME).exists():
            try:
                db = sqlite3.connect(f"file:{killed / FILENAME}?mode=ro", uri=True, timeout=5)
                n = db.execute("SELECT count(*) FROM variants").fetchone()[0]
                db.close()
            except sqlite3.OperationalError:
                n = 0
            if n >= 2:
                break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, partial = scores(killed)
    assert 2 <= len(partial) < 7
    out = bench(killed)
    rows, labels = scores(killed)
    clean_rows, clean_labels = scores(clean)
    assert sorted(labels) == sorted(clean_labels) and len(labels) == len(set(labels)) == 7
    assert rows == clean_rows  # same numbers, nothing duplicated
    assert "Findings" in out.stdout
    for name in ("report.md", "report.html", "sparsity.png", "nm_quant.png", "findings.json", "lm_eval/dense.json"):
        assert (killed / name).exists(), name
    status = kick("bench", "--run-dir", killed, *SMALL, "--status")
    assert "7 cells done" in status.stdout and "todo" not in status.stdout
    lm = json.loads((killed / "lm_eval" / "wanda-60.json").read_text())
    assert "factoid-qa" in lm["results"] and lm["config"]["variant"] == "wanda-60"


@pytest.mark.unit
def test_other_models_store_is_refused(tmp_path):
    store = Store(tmp_path, "world")
    store.close()
    store = Store(tmp_path, "other-model")  # nothing measured yet: the store takes the model asked for
    assert store.model == "other-model" and store.meta()["model"] == "other-model"
    store.write_cell("dense", "dense", None, None, None, {"factoid-qa": {"n": 1, "exact_match": 1.0}},
                     {"factoid-qa": [{"id": 0, "score": 1.0}]}, run_id=1, seconds=1.0)
    store.close()
    with pytest.raises(StoreError, match="holds results for model 'other-model', not 'world'"):
        Store(tmp_path, "world")
    reader = Store(tmp_path, None)
    assert reader.model == "other-model" and reader.scores()["dense"]["factoid-qa"]["exact_match"] == 1.0
    reader.close()


@pytest.mark.unit
def test_corrupt_store_is_left_untouched(tmp_path):
    path = tmp_path / FILENAME
    path.write_bytes(b"this is not a database" * 100)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a readable kick-hub store"):
        Store(tmp_path, "world")
    assert path.read_bytes() == before
    out = kick("bench", "--run-dir", tmp_path, "--tasks", "factoid-qa", "--limit", "2")
    assert out.returncode == 2 and "not a readable kick-hub store" in out.stderr
    assert path.read_bytes() == before


@pytest.mark.unit
@pytest.mark.parametrize("args, message", [
    (["--methods", "obs"], "methods: unknown ['obs']"),
    (["--tasks", "poetry"], "task: must be one of"),
    (["--bits", "5"], "bits: each must be one of"),
    (["--patterns", "4:2"], "pattern"),
])
def test_bad_bench_input(args, message, tmp_path):
    out = kick("bench", "--run-dir", tmp_path / "r", *args)
    assert out.returncode == 2 and message in out.stderr
    assert not (tmp_path / "r" / FILENAME).exists()


def _row(label, method, sparsity, pattern, bits, rel):
    return {"label": label, "method": method, "sparsity": sparsity, "pattern": pattern, "bits": bits,
            "abs": dict(rel), "rel": dict(rel)}


@pytest.mark.unit
def test_findings_on_constructed_numbers():
    k = lambda f, m, i, s, p: {"factoid-qa": f, "mcq-reasoning": m, "icra-qa": i, "icsum": s, "perplexity": p}  # noqa
    rows = [
        _row("dense", "dense", None, None, None, k(1, 1, 1, 1, 1)),
        _row("wanda-30", "wanda", 0.3, None, None, k(0.85, 0.9, 0.99, 0.98, 0.98)),
        _row("wanda-50", "wanda", 0.5, None, None, k(0.5, 0.6, 0.9, 0.9, 0.9)),
        _row("wanda-2of4", "wanda", 0.5, "2:4", None, k(0.3, 0.4, 0.7, 0.8, 0.8)),
        _row("gptq-4bit", "gptq", None, None, 4, k(0.95, 0.97, 1, 1, 0.99)),
    ]
    verdicts = {f["claim"].split()[0]: f["verdict"] for f in analysis.findings(rows)}
    assert verdicts == {"Knowledge": "confirmed", "N:M": "confirmed", "Quantization": "confirmed",
                        "In-context": "confirmed", "Pruned": "confirmed"}
    # flip the numbers: perplexity collapses as fast as knowledge, N:M better than unstructured
    rows[1]["rel"]["perplexity"] = 0.8
    rows[3]["rel"].update({"factoid-qa": 0.9, "mcq-reasoning": 0.9})
    rows[4]["rel"].update({"factoid-qa": 0.1, "mcq-reasoning": 0.1})
    verdicts = {f["claim"].split()[0]: f["verdict"] for f in analysis.findings(rows)}
    assert verdicts["Knowledge"] == "not confirmed" and verdicts["N:M"] == "not confirmed"
    assert verdicts["Quantization"] == "not confirmed"
    losses = analysis.first_loss(rows, ["factoid-qa", "icra-qa"])
    assert losses == {"factoid-qa": {"wanda": 0.3}, "icra-qa": {"wanda": 0.5}}
    assert analysis.findings(rows[:1])[1]["verdict"] == "not measured"


@pytest.mark.unit
def test_per_task_limits(tmp_path):
    from kick_hub.evaluation import merge_limits, task_limit

    assert task_limit({"*": 50, "icsum": 6}, "icsum") == 6 and task_limit({"*": 50}, "factoid-qa") == 50
    assert task_limit(7, "icsum") == 7
    assert merge_limits(7, None) == 7 and merge_limits(None, []) is None
    assert merge_limits(50, [("icsum", 6), ("icsum", 4)]) == {"*": 50, "icsum": 4}
    out = kick("bench", "--run-dir", tmp_path, "--task-limit", "essay=3")
    assert out.returncode == 2 and "task must be one of" in out.stderr


def _hold_in_subprocess(run_dir):
    """A process holding the run dir's driver lock until killed (its pid is the holder's)."""
    code = ("import sys, time\nfrom kick_hub.bench.sweep import hold\nwith hold(sys.argv[1]):\n"
            "    print('held', flush=True)\n    time.sleep(300)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


TINY = ["--methods", "magnitude", "--sparsities", "0.5", "--patterns", "--bits", "--tasks", "factoid-qa",
        "--limit", "2"]


def test_run_dir_in_use_is_refused_and_a_killed_holder_frees_it(tmp_path):
    from kick_hub.bench.sweep import OWNER_FILE

    run_dir = tmp_path / "run"
    assert kick("bench", "--run-dir", str(run_dir), *TINY).returncode == 0
    before = scores(run_dir)
    holder = _hold_in_subprocess(run_dir)
    try:
        start = time.time()
        out = kick("bench", "--run-dir", str(run_dir), *TINY)
        assert out.returncode == 2, out.stderr[-2000:]
        assert f"is in use by another kick bench (pid {holder.pid} on host" in out.stderr
        assert time.time() - start < 60 and "Traceback" not in out.stderr
        status = kick("bench", "--run-dir", str(run_dir), *TINY, "--status")  # readers take no lock
        assert status.returncode == 0 and "2 cells done" in status.stdout
        store = Store(run_dir, None)
        assert report.write(store, tmp_path / "copy").name == "report.md"
        store.close()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run_dir / OWNER_FILE).exists()  # the killed holder's note stays behind; its lock does not
    out = kick("bench", "--run-dir", str(run_dir), *TINY)
    assert out.returncode == 0, out.stderr[-2000:]
    assert scores(run_dir) == before
    db = sqlite3.connect(run_dir / FILENAME)
    assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 2  # the refused run recorded nothing
    db.close()


def test_two_sweeps_started_together(tmp_path):
    run_dir = tmp_path / "run"
    procs = [kick("bench", "--run-dir", run_dir, *TINY, wait=False) for _ in range(2)]  # two processes at once
    outs = [p.communicate(timeout=600) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], [o[1][-2000:] for o in outs]
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    assert f"is in use by another kick bench (pid {procs[winner].pid} on host" in outs[loser][1]
    assert "Traceback" not in outs[loser][1]
    db = sqlite3.connect(run_dir / FILENAME)
    assert sorted(db.execute("SELECT label, task FROM evaluated").fetchall()) == [
        ("dense", "factoid-qa"), ("magnitude-50", "factoid-qa")]
    assert db.execute("SELECT count(*) FROM samples").fetchone()[0] == 4
    db.close()
    assert (run_dir / "variants" / "magnitude-50" / "kick_manifest.json").exists()
