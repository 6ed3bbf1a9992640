"""What a newcomer hit (issue 32): threads from the environment, outputs checked first, unreachable models refused
before anything is written, options no method uses refused, Ctrl-C as one line, read-only outputs named."""

import json
import os
import signal
import time

import pytest

from kick_hub.bench.store import FILENAME
from kick_hub.device import cgroup_cpus, resolve_threads
from tests.kick_runner import kick


# ----------------------------------------------------------------- threads
@pytest.mark.unit
def test_threads_come_from_the_option_then_the_environment(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert resolve_threads(3) == (3, "--threads")
    assert resolve_threads() == (1, "OMP_NUM_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "4,2")  # OpenMP's nested list: this level's count first
    assert resolve_threads() == (4, "OMP_NUM_THREADS")
    for junk in ("junk", "0", "-1"):
        monkeypatch.setenv("OMP_NUM_THREADS", junk)
        with pytest.raises(ValueError, match="OMP_NUM_THREADS: must be a positive integer"):
            resolve_threads()
        assert resolve_threads(2) == (2, "--threads")  # an explicit --threads needs no environment
    monkeypatch.delenv("OMP_NUM_THREADS")
    n, source = resolve_threads()
    assert source in ("cgroup CPU quota", "CPU affinity") and n == min(len(os.sched_getaffinity(0)),
                                                                       cgroup_cpus() or 10 ** 6)
    with pytest.raises(ValueError, match="threads"):
        resolve_threads(0)


@pytest.mark.unit
def test_cgroup_quota_is_read_from_v2_and_v1_files(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs -> 2 threads
    assert cgroup_cpus(str(v2)) == 2
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpus(str(v2)) is None
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpus(str(tmp_path / "v1")) == 1
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpus(str(tmp_path / "v1")) is None


def test_compress_and_evaluate_record_the_threads_they_ran_on(tmp_path):
    # a fresh interpreter: its stderr is what a user sees (this process's was set up by earlier tests)
    out = kick("compress", "--method", "magnitude", "--sparsity", "0.5", "--output", str(tmp_path / "v"),
               env={"OMP_NUM_THREADS": "1"}, subprocess=True)
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "v" / "kick_manifest.json").read_text())["threads"] == 1
    # kick's own lines only: no transformers load/save bars, no tokenizer length warning from calibration
    assert "Loading weights" not in out.stderr and "Writing model shards" not in out.stderr
    assert "Token indices sequence length" not in out.stderr
    out = kick("evaluate", "--task", "factoid-qa", "--limit", "2", "--threads", "1", "--output",
               str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "r.json").read_text())["config"]["threads"] == 1


# ----------------------------------------------------------------- checked before any work
@pytest.mark.unit
def test_evaluate_output_that_is_a_directory_is_refused_while_parsing(tmp_path):
    start = time.monotonic()
    out = kick("evaluate", "--task", "factoid-qa", "--output", str(tmp_path))
    assert out.returncode == 2 and "argument --output" in out.stderr and "is a directory" in out.stderr
    assert "Traceback" not in out.stderr
    assert list(tmp_path.iterdir()) == []
    assert time.monotonic() - start < 60  # refused before a model loads (a bound that only catches a hang)


@pytest.mark.parametrize("model, message", [
    ("org/not-reachable", "cannot be reached now"),
    ("./no/such/dir", "no such directory"),
])
def test_bench_with_a_model_that_cannot_load_writes_nothing(tmp_path, model, message):
    run_dir = tmp_path / "run"
    out = kick("bench", "--model", model, "--run-dir", str(run_dir), "--methods", "magnitude", "--sparsities", "0.5",
               "--patterns", "--tasks", "factoid-qa", "--limit", "2", subprocess=True)  # all of a user's stderr
    assert out.returncode == 2 and out.stderr.startswith("kick: error: model:") and message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not run_dir.exists()


@pytest.mark.unit
@pytest.mark.parametrize("args, unused", [
    (["--methods", "wanda", "--bits", "4"], "--bits"),
    (["--methods", "wanda", "--group-size", "64"], "--group-size"),
    (["--methods", "gptq", "--sparsities", "0.5"], "--sparsities"),
    (["--methods", "gptq", "--patterns", "2:4"], "--patterns"),
])
def test_bench_option_no_method_uses_is_refused(tmp_path, args, unused):
    out = kick("bench", "--run-dir", str(tmp_path / "r"), *args)
    assert out.returncode == 2 and f"methods: {unused} applies to no method of this sweep" in out.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.unit
def test_bench_calibration_options_no_cell_reads_are_refused(tmp_path):
    out = kick("bench", "--run-dir", str(tmp_path / "r"), "--methods", "magnitude", "--sparsities", "0.5",
               "--patterns", "--tasks", "factoid-qa", "--nsamples", "8")
    assert out.returncode == 2 and "calibration: --nsamples not used by magnitude" in out.stderr, out.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.unit
def test_read_only_outputs_name_their_option(tmp_path):
    out = kick("lm-eval-tasks", "--output", "/proc/kick-tasks")
    assert out.returncode == 2 and "argument --output" in out.stderr and "not writable" in out.stderr
    out = kick("bench", "--run-dir", "/proc/kick-run", "--methods", "magnitude")
    assert out.returncode == 2 and "argument --run-dir" in out.stderr and "not writable" in out.stderr


@pytest.mark.unit
def test_help_says_what_a_pattern_prunes():
    out = kick("compress", "--help")
    assert "are pruned (2:4 and 4:8 = 50 % sparsity, 3:4 = 75 %)" in " ".join(out.stdout.split())


# ----------------------------------------------------------------- Ctrl-C and --status of a small run
def test_ctrl_c_is_one_line_and_exit_130_and_status_lists_the_runs_own_cells(tmp_path):
    run_dir = tmp_path / "run"
    tiny = ["--methods", "magnitude", "--sparsities", "0.5", "--patterns", "--tasks", "factoid-qa", "--limit", "2"]
    out = kick("bench", "--run-dir", str(run_dir), *tiny)
    assert out.returncode == 0, out.stderr
    status = kick("bench", "--run-dir", str(run_dir), "--status")
    assert status.returncode == 0 and "2 cells done" in status.stdout
    assert "todo" not in status.stdout and "wanda" not in status.stdout  # not the default sweep's 29 other cells

    proc = kick("bench", "--run-dir", str(tmp_path / "run2"), "--methods", "magnitude", "--sparsities", "0.5", "0.6",
                "0.7", "--patterns", "--tasks", "factoid-qa", "mcq-reasoning", "--limit", "50", wait=False)  # SIGINT
    deadline = time.monotonic() + 300  # waits for the store, a bound that only catches a hang
    while not (tmp_path / "run2" / FILENAME).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "kick: interrupted"


@pytest.mark.parametrize("variables, named", [
    ({"TRANSFORMERS_OFFLINE": "1", "HF_HUB_OFFLINE": ""}, "unset TRANSFORMERS_OFFLINE for"),
    ({"TRANSFORMERS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}, "unset HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE for"),
])
def test_hub_commands_in_offline_mode_name_every_variable_that_set_it(tmp_path, variables, named):
    """huggingface_hub treats TRANSFORMERS_OFFLINE as HF_HUB_OFFLINE; its own hint names only the latter."""
    for argv in (["publish-tasks", "--org", "org"], ["bench", "--run-dir", str(tmp_path / "r"), "--push", "org"]):
        # huggingface_hub reads the offline switches when it is imported: a fresh interpreter
        out = kick(*argv, env={"HF_TOKEN": "hf_test", **variables}, subprocess=True)
        assert out.returncode == 1 and "kick: error: hub: offline mode is on" in out.stderr, out.stderr
        assert named in out.stderr and "hf_test" not in out.stderr


@pytest.mark.parametrize("args, message", [
    (["--method", "magnitude", "--sparsity", "0.5", "--group-size", "64"], "group_size: not used by 'magnitude'"),
    (["--method", "wanda", "--sparsity", "0.5", "--damp", "0.1"], "damp: not used by 'wanda'"),
    (["--method", "sparsegpt", "--sparsity", "0.5", "--asym"], "sym: not used by 'sparsegpt' (only by gptq, awq); "
                                                               "drop --asym"),
    (["--method", "gptq", "--bits", "4", "--blocksize", "64"], "blocksize: not used by 'gptq'"),
    (["--method", "magnitude", "--sparsity", "0.5", "--calibration", "nosuchfile.txt"],
     "calibration: --calibration not used by magnitude"),
    (["--method", "int8", "--nsamples", "4", "--seqlen", "64"], "calibration: --nsamples, --seqlen not used by int8"),
])
def test_compress_options_the_method_does_not_read_are_refused(tmp_path, args, message):
    """The kind of `bench --bits` without gptq: an option no part of the run reads is refused, not dropped."""
    out = kick("compress", *args, "--output", str(tmp_path / "v"))
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert not (tmp_path / "v").exists()


def test_a_sweep_logged_to_a_file_has_no_cursor_codes(tmp_path):
    """stderr not a terminal: no nested bars (their cursor-up codes stay in a log as garbage), a line per cell phase."""
    out = kick("bench", "--run-dir", str(tmp_path / "r"), "--methods", "magnitude", "--sparsities", "0.5",
               "--patterns", "--tasks", "factoid-qa", "--limit", "2", subprocess=True)
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stderr
    assert [line for line in out.stderr.splitlines() if line.startswith("cell 2/2 magnitude-50: ")][:2] == [
        "cell 2/2 magnitude-50: compressing", "cell 2/2 magnitude-50: evaluating factoid-qa"]
