"""A run dir's results are labelled only with the settings they were measured with: a rerun with other settings is
refused naming each one (or, with --force, starts over beside the old results), and a rerun with the same settings
evaluates only the cells and tasks that are missing."""

import json
import sqlite3

import pytest

from kick_hub.bench import plan, sweep
from kick_hub.bench.store import FILENAME, Store, StoreError
from kick_hub.cli import main

BASE = ["--methods", "magnitude", "--sparsities", "0.5", "--patterns", "--tasks", "factoid-qa",
        "--limit", "3"]


def bench(run_dir, *args):
    return main(["bench", "--run-dir", str(run_dir), *args])


def rows(run_dir, query):
    db = sqlite3.connect(run_dir / FILENAME)
    out = db.execute(query).fetchall()
    db.close()
    return out


SCORES = "SELECT label, task, metric, value FROM scores ORDER BY 1, 2, 3"


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """A run dir measured with data=world, limit=3 on factoid-qa (dense and magnitude-50)."""
    run_dir = tmp_path_factory.mktemp("measured")
    assert bench(run_dir, *BASE) == 0
    return run_dir


def test_other_data_and_limit_are_refused_and_nothing_is_relabelled(measured, capsys):
    from kick_hub.hub.card import results_from_run
    from kick_hub.hub.results import run_record
    from kick_hub.variant import load_manifest

    before = rows(measured, SCORES), rows(measured, "SELECT count(*) FROM runs")
    with pytest.raises(SystemExit) as e:
        bench(measured, *BASE[:-1], "20", "--data", "world-heldout")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert (f"run-dir: {measured} was measured with data=world, limit=3 (factoid-qa); this run asks "
            f"data=world-heldout, limit=20 (factoid-qa): use another --run-dir, or --force") in err
    assert (rows(measured, SCORES), rows(measured, "SELECT count(*) FROM runs")) == before
    store = Store(measured, None)
    meta = store.meta()
    store.close()
    assert (meta["data"], meta["limit"], meta["protocol"], meta["batch_size"]) == ("world", 3, "default", 32)
    assert "Measured with data `world`; examples per task: 3;" in (measured / "report.md").read_text()
    lm = json.loads((measured / "lm_eval" / "magnitude-50.json").read_text())["config"]
    assert (lm["data"], lm["limit"]) == ("world", 3)
    config = run_record(measured)[1]["config"]
    assert (config["data"], config["limit"]) == ("world", 3)
    card = results_from_run(measured, load_manifest(measured / "variants" / "magnitude-50"))
    assert (card["data"], card["limit"]) == ("world", 3)


@pytest.mark.parametrize("args, stored, asked", [
    (["--protocol", "llm-kick"], "protocol=default", "protocol=llm-kick"),
    (["--batch-size", "8"], "batch-size=32", "batch-size=8"),
    # calibration settings need a cell that calibrates (for magnitude alone they are refused as unread)
    (["--methods", "magnitude", "wanda", "--calibration", "c4"], "calibration=world", "calibration=c4"),
    (["--methods", "magnitude", "wanda", "--nsamples", "8"], "nsamples=default", "nsamples=8"),
    (["--methods", "magnitude", "wanda", "--seqlen", "64"], "seqlen=default", "seqlen=64"),
    (["--model", "{other}"], "model=world", "model=other-model"),  # a loadable model: the world's, copied
    (["--task-limit", "factoid-qa=2"], "limit=3 (factoid-qa)", "limit=2 (factoid-qa)"),
])
def test_each_other_setting_is_refused_by_name(measured, capsys, args, stored, asked, tmp_path):
    if "{other}" in args:
        import shutil

        from kick_hub.engine import resolve_model

        shutil.copytree(resolve_model("world"), tmp_path / "other-model")
        args = [a.replace("{other}", str(tmp_path / "other-model")) for a in args]
    before = rows(measured, SCORES), rows(measured, "SELECT count(*) FROM runs")
    with pytest.raises(SystemExit) as e:
        bench(measured, *BASE, *args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"was measured with {stored}; this run asks {asked}: use another --run-dir" in err
    assert (rows(measured, SCORES), rows(measured, "SELECT count(*) FROM runs")) == before


def test_same_settings_resume_evaluates_only_missing_cells_and_tasks(tmp_path):
    run_dir = tmp_path / "run"
    assert bench(run_dir, *BASE) == 0
    factoid = rows(run_dir, SCORES)
    # a new task (with its own limit), a new sparsity: old cells get the new task, the new cell both tasks
    more = ["--methods", "magnitude", "--sparsities", "0.5", "0.3", "--patterns", "--tasks", "factoid-qa",
            "mcq-reasoning", "--limit", "3", "--task-limit", "mcq-reasoning=2"]
    assert bench(run_dir, *more) == 0
    evaluated = rows(run_dir, "SELECT label, task, run_id FROM evaluated ORDER BY 1, 2")
    assert evaluated == [("dense", "factoid-qa", 1), ("dense", "mcq-reasoning", 2),
                         ("magnitude-30", "factoid-qa", 2), ("magnitude-30", "mcq-reasoning", 2),
                         ("magnitude-50", "factoid-qa", 1), ("magnitude-50", "mcq-reasoning", 2)]
    kept = [r for r in rows(run_dir, SCORES) if r[0] != "magnitude-30" and r[1] == "factoid-qa"]
    assert kept == factoid  # measured once, never again
    assert rows(run_dir, "SELECT task, count(*) FROM samples WHERE label = 'dense' GROUP BY task ORDER BY 1") == [
        ("factoid-qa", 3), ("mcq-reasoning", 2)]
    store = Store(run_dir, None)
    assert store.meta()["limit"] == {"factoid-qa": 3, "mcq-reasoning": 2}
    store.close()
    assert "examples per task: factoid-qa 3, mcq-reasoning 2" in (run_dir / "report.md").read_text()
    # the same run again evaluates nothing
    before = rows(run_dir, SCORES), rows(run_dir, "SELECT label, finished FROM variants ORDER BY 1")
    assert bench(run_dir, *more) == 0
    assert (rows(run_dir, SCORES), rows(run_dir, "SELECT label, finished FROM variants ORDER BY 1")) == before
    status = sweep.status(run_dir, plan.plan(["magnitude"], [0.5, 0.3, 0.7], [], []),
                          ["factoid-qa", "mcq-reasoning"])
    assert "3 cells done" in status and "limit=" in status
    assert [line.split() for line in status.splitlines() if "todo" in line] == [
        ["todo", "magnitude-70", "factoid-qa,", "mcq-reasoning"]]


def test_force_moves_old_results_aside_and_measures_anew(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert bench(run_dir, *BASE) == 0
    old = rows(run_dir, SCORES)
    assert bench(run_dir, *BASE[:-1], "2", "--data", "world-heldout", "--force") == 0
    moved = [p for p in (run_dir / "superseded").iterdir()]
    assert len(moved) == 1 and f"moved results measured with other settings to {moved[0]}" in capsys.readouterr().err
    assert (moved[0] / "variants" / "magnitude-50" / "kick_manifest.json").exists()
    assert rows(moved[0], SCORES) == old
    old_store, new_store = Store(moved[0], None), Store(run_dir, None)
    assert (old_store.meta()["data"], old_store.meta()["limit"]) == ("world", 3)
    assert (new_store.meta()["data"], new_store.meta()["limit"]) == ("world-heldout", 2)
    assert rows(run_dir, "SELECT label, task FROM evaluated ORDER BY 1") == [("dense", "factoid-qa"),
                                                                           ("magnitude-50", "factoid-qa")]
    assert rows(run_dir, "SELECT count(*) FROM samples") == [(4,)]
    old_store.close()
    new_store.close()


SETTINGS = sweep.run_settings("world", "world", "default", 32, "world", None, None)


def _write(store, label, tasks, spec=None, judge=None):
    return store.write_cell(label, "dense" if spec is None else spec["method"], spec, None, None,
                            {t: {"n": 1, "exact_match": 0.5} for t in tasks},
                            {t: [{"id": 0, "score": 0.5}] for t in tasks}, run_id=1, seconds=1.0,
                            task_settings={t: {"limit": 1, "judge": judge} for t in tasks})


def test_judge_and_cell_spec_are_part_of_the_identity(tmp_path):
    from kick_hub.compress import CompressSpec

    gptq = CompressSpec("gptq", bits=4, group_size=128)
    store = Store(tmp_path, "world")
    store.begin(SETTINGS)
    _write(store, "gptq-4bit", ["icsum"], gptq.to_dict(), judge="openai:m, prompt summary-v1")
    asked = CompressSpec("gptq", bits=4, group_size=64).to_dict()
    diffs = store.differences(SETTINGS, {"icsum": {"limit": 1, "judge": None}}, {"gptq-4bit": asked})
    assert diffs == [("judge (icsum)", "openai:m, prompt summary-v1", None), ("group_size (gptq-4bit)", 128, 64)]
    message = sweep.describe_differences(tmp_path, diffs)
    assert ("was measured with judge=openai:m, prompt summary-v1 (icsum), group_size=128 (gptq-4bit); this run asks "
            "judge=none (icsum), group_size=64 (gptq-4bit)") in message
    assert store.differences(SETTINGS, {"icsum": {"limit": 1, "judge": "openai:m, prompt summary-v1"}},
                             {"gptq-4bit": gptq.to_dict()}) == []
    # a task no cell was evaluated on yet takes whatever settings this run has
    assert store.differences(SETTINGS, {"factoid-qa": {"limit": 99, "judge": None}}, {}) == []
    assert store.meta()["judge"] == {"icsum": "openai:m, prompt summary-v1"}
    store.close()


def test_a_cell_written_twice_does_not_crash_and_keeps_the_first(tmp_path):
    store = Store(tmp_path, "world")
    store.begin(SETTINGS)
    assert _write(store, "dense", ["factoid-qa"]) == ["factoid-qa"]
    first = store.scores()
    assert store.write_cell("dense", "dense", None, None, None, {"factoid-qa": {"n": 1, "exact_match": 0.9}},
                            {"factoid-qa": [{"id": 0, "score": 0.9}]}, run_id=2, seconds=1.0) == []
    assert store.scores() == first and len(store.samples("dense", "factoid-qa")) == 1
    assert _write(store, "dense", ["mcq-reasoning"]) == ["mcq-reasoning"]
    assert store.done() == {"dense": {"factoid-qa", "mcq-reasoning"}}
    store.close()


OLD_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (id INTEGER PRIMARY KEY, started REAL NOT NULL, argv TEXT NOT NULL);
CREATE TABLE variants (label TEXT PRIMARY KEY, method TEXT NOT NULL, sparsity REAL, pattern TEXT, bits INTEGER,
    spec TEXT, manifest TEXT, path TEXT, run_id INTEGER, seconds REAL, finished REAL NOT NULL);
CREATE TABLE scores (label TEXT NOT NULL, task TEXT NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (label, task, metric));
CREATE TABLE samples (label TEXT NOT NULL, task TEXT NOT NULL, idx INTEGER NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (label, task, idx));
INSERT INTO meta VALUES ('model', 'world'), ('schema_version', '1'), ('data', 'world'), ('limit', '5'),
    ('protocol', 'default');
INSERT INTO variants VALUES ('dense', 'dense', NULL, NULL, NULL, '{}', NULL, NULL, 1, 1.0, 1.0);
INSERT INTO scores VALUES ('dense', 'factoid-qa', 'exact_match', 0.5);
"""


def test_a_store_that_recorded_no_settings_is_refused(tmp_path, capsys):
    db = sqlite3.connect(tmp_path / FILENAME)
    db.executescript(OLD_SCHEMA)
    db.close()
    with pytest.raises(StoreError, match=r"older kick-hub \(store schema 1\)"):
        Store(tmp_path, "world")
    with pytest.raises(SystemExit) as e:
        bench(tmp_path, *BASE)
    assert e.value.code == 2 and "store schema 1" in capsys.readouterr().err
    reader = Store(tmp_path, None)  # readers still read it, labelled as it recorded
    assert reader.meta()["limit"] == 5 and reader.done() == {"dense": {"factoid-qa"}}
    reader.close()
    assert rows(tmp_path, "SELECT name FROM sqlite_master WHERE name = 'evaluated'") == []  # left as it was


def test_variants_cached_under_other_settings_are_not_reused(tmp_path):
    from kick_hub.bench.cell import cached_manifest
    from kick_hub.bench.plan import Cell
    from kick_hub.compress import CompressSpec

    spec = CompressSpec("magnitude", sparsity=0.5)
    vdir = sweep.variant_dir(tmp_path, spec.label)
    vdir.mkdir(parents=True)
    (vdir / "kick_manifest.json").write_text(json.dumps({"spec": spec.to_dict()}))
    assert cached_manifest(vdir, spec) == {"spec": spec.to_dict()}
    assert cached_manifest(vdir, CompressSpec("magnitude", sparsity=0.5, seed=1)) is None
    dense = [Cell("dense", None)]
    # a run killed before its first result leaves a cache made with its settings
    store = Store(tmp_path, "world")
    store.begin(SETTINGS)
    store.close()
    sweep.run("world", tmp_path, dense, ["factoid-qa"], data="world-heldout", limit=1, progress=False).close()
    assert vdir.exists()  # the data source does not change a variant: kept
    other = tmp_path / "other"
    other.mkdir()
    store = Store(other, "world")
    store.begin(SETTINGS)
    store.close()
    cached = sweep.variant_dir(other, spec.label)
    cached.mkdir(parents=True)
    (cached / "kick_manifest.json").write_text(json.dumps({"spec": spec.to_dict()}))
    # other calibration settings (read by the wanda cell: a plan no cell of which calibrates refuses them)
    wanda = [*dense, Cell("wanda-50", CompressSpec("wanda", sparsity=0.5))]
    sweep.run("world", other, wanda, ["factoid-qa"], limit=1, nsamples=4, seqlen=32, progress=False).close()
    assert not cached.exists() and sorted(p.name for p in (other / "variants").iterdir()) == ["wanda-50"]
