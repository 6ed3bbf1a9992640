"""`kick bench --keep-variants all|none|pushed`: what stays on disk, the disk estimate before a sweep, resume."""

import json
import struct

import pytest

from kick_hub.bench import plan, sweep
from kick_hub.bench.store import Store, StoreError
from kick_hub.variant import MANIFEST
from tests.kick_runner import kick

TASKS = ["factoid-qa", "mcq-reasoning"]
OPTS = dict(limit=8, nsamples=8, seqlen=128, progress=False)


def cells():
    return plan.plan(["magnitude", "wanda"], [0.5], [], [])  # dense, magnitude-50, wanda-50


def scores(run_dir):
    store = Store(run_dir, None)
    try:
        return store.scores()
    finally:
        store.close()


@pytest.fixture(scope="module")
def kept_run(tmp_path_factory):
    """The reference: a sweep keeping every variant."""
    run_dir = tmp_path_factory.mktemp("all")
    sweep.run("world", run_dir, cells(), TASKS, **OPTS).close()
    return run_dir


def test_keep_none_leaves_no_variant_and_resume_rebuilds(kept_run, tmp_path):
    assert sweep.kept_variants(kept_run) == ["magnitude-50", "wanda-50"]
    # the estimate: every parameter as float32 plus the tokenizer files; a saved world variant (with its manifest
    # and calibration ids) is within 1 % of it
    saved = sum(p.stat().st_size for p in (kept_run / "variants" / "wanda-50").iterdir())
    assert abs(saved - sweep.variant_bytes("world")) / saved < 1e-2

    run_dir = tmp_path / "none"
    sweep.run("world", run_dir, cells(), TASKS[:1], keep_variants="none", **OPTS).close()
    assert not (run_dir / "variants").exists()
    # a second run adds a task: each cell is unfinished and its variant gone, so it is compressed again, scored on
    # the new task and deleted again; the scores equal those of the sweep that kept its variants
    sweep.run("world", run_dir, cells(), TASKS, keep_variants="none", **OPTS).close()
    assert not (run_dir / "variants").exists()
    assert scores(run_dir) == scores(kept_run)
    text = sweep.status(run_dir, cells(), TASKS)
    assert "3 cells done, variants kept: 0 of 2" in text
    done = {line.split()[1]: line for line in text.splitlines() if line.startswith("  done")}
    assert sorted(done) == ["dense", "magnitude-50", "wanda-50"]
    assert " base model " in done["dense"] and " deleted " in done["wanda-50"] and " deleted " in done["magnitude-50"]
    assert "todo" not in text


def test_rerun_with_none_deletes_variants_of_finished_cells(kept_run, tmp_path):
    import shutil

    run_dir = tmp_path / "rerun"
    shutil.copytree(kept_run, run_dir)
    before = scores(run_dir)
    sweep.run("world", run_dir, cells(), TASKS, keep_variants="none", **OPTS).close()  # nothing left to evaluate
    assert not (run_dir / "variants").exists() and scores(run_dir) == before
    assert "variants kept: 0 of 2" in sweep.status(run_dir)
    assert "variants kept: 2 of 2" in sweep.status(kept_run)


def _sparse_model(folder, nbytes):
    """A model directory whose safetensors header declares ``nbytes`` of float32 weights, written as a sparse file
    (the data is a hole: it takes no disk)."""
    folder.mkdir()
    n = nbytes // 4
    header = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    header += b" " * (-len(header) % 8)
    path = folder / "model.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + 4 * n)
    return folder


def test_a_sweep_that_does_not_fit_is_refused_before_any_work(tmp_path):
    import shutil

    free = shutil.disk_usage(tmp_path).free
    size = int(free * 0.6) // 4 * 4
    model = _sparse_model(tmp_path / "big", size)  # one variant fits, two do not
    assert sweep.variant_bytes(str(model)) == size
    run_dir = tmp_path / "run"
    with pytest.raises(StoreError, match=r"2 variants x .*--keep-variants all\); use --keep-variants none"):
        sweep.run(str(model), run_dir, cells(), TASKS, **OPTS)
    assert not (run_dir / "variants").exists()
    need, have = sweep.disk_need(run_dir, cells(), size, "none")
    assert need == size and need <= have  # with none: one variant at a time
    # variants already on disk need no more space
    assert sweep.disk_need(tmp_path, [], 10**15, "all")[0] == 0


@pytest.mark.unit
@pytest.mark.parametrize("extra, message", [
    (["--keep-variants", "pushed"], "keep-variants: 'pushed' deletes each variant once --push has uploaded it, so "
                                    "it needs --push ORG"),
    (["--keep-variants", "none", "--push", "test-org"], "keep-variants: 'none' deletes each variant once it is "
                                                        "scored, so --push would have nothing to upload"),
    (["--keep-variants", "some"], "argument --keep-variants: invalid choice: 'some'"),
    # Ray's options without --executor ray would be silently ignored: refused, naming them
    (["--ray-address", "nonsense", "--cell-gpus", "1"], "executor: --ray-address, --cell-gpus applies to --executor "
                                                        "ray only; this run's executor is 'local'"),
])
def test_bad_keep_variants(extra, message, tmp_path):
    out = kick("bench", "--run-dir", tmp_path / "r", *extra)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert not (tmp_path / "r").exists()


def test_keep_pushed_pushes_each_variant_then_deletes_it(tmp_path, hub):
    from tests.kick_runner import hub_kick

    run_dir = tmp_path / "run"
    out = hub_kick(hub, "bench", "--run-dir", str(run_dir), "--methods", "magnitude", "--sparsities", "0.5",
                   "--patterns", "--bits", "--tasks", "factoid-qa", "--limit", "8", "--push", "test-org",
                   "--keep-variants", "pushed")
    files = hub.files("test-org/world-magnitude-50")
    assert "model.safetensors" in files and MANIFEST in files and b"llm-kick" in files["README.md"]
    assert "pushed magnitude-50:" in out.stdout
    assert not (run_dir / "variants").exists()
    text = sweep.status(run_dir)
    assert "variants kept: 0 of 1" in text and "pushed test-org/world-magnitude-50" in text
