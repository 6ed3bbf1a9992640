"""A run's data is identified by its content, not its path: the store records per task a digest of the records used
and of every file read (few-shot files included), and a rerun on data edited under the same ``--data`` path is
refused naming the task and the file, with nothing written."""

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from kick_hub import data
from kick_hub.bench.store import FILENAME, Store
from kick_hub.tasks import records as task_records
from tests.kick_runner import kick


def labels(run_dir: Path) -> list[str]:
    db = sqlite3.connect(run_dir / FILENAME)
    out = sorted(r[0] for r in db.execute("SELECT label FROM variants"))
    db.close()
    return out


def write_fq(path: Path, records: list[dict]) -> None:
    path.write_text("".join(f"{r['question']} | {r['answers'][0]}\n" for r in records), encoding="utf-8")


def test_questions_replaced_under_the_same_path_are_refused(tmp_path):
    world = task_records.load("factoid-qa", "world")
    fq, run_dir = tmp_path / "fq.txt", tmp_path / "run"
    write_fq(fq, world[:20])
    args = ["bench", "--run-dir", str(run_dir), "--data", str(fq), "--methods", "magnitude", "--patterns",
            "--tasks", "factoid-qa", "--limit", "20", "--sparsities", "0.5"]
    assert kick(*args)[0] == 0
    store = Store.open_readonly(run_dir)
    recorded = store.task_settings()["factoid-qa"]["data"]
    before = store.samples("dense", "factoid-qa")
    store.close()
    assert recorded == {"digest": data.records_digest(task_records.load("factoid-qa", str(fq), 20)), "files": {
        "fq.txt": __import__("hashlib").sha256(fq.read_bytes()).hexdigest()[:16]}}

    write_fq(fq, world[20:40])  # other questions, same path: fq-0 is another question now
    code, _, err = kick(*args, "0.7")
    assert code == 2
    assert (f"kick: error: run-dir: {run_dir} holds results measured on other data than this run's: factoid-qa "
            f"(fq.txt changed): use another --run-dir, or --force") in err
    assert labels(run_dir) == ["dense", "magnitude-50"]  # nothing measured on the other questions

    write_fq(fq, world[:20])  # the same content again (a new file, a new mtime): the same data
    assert kick(*args, "0.7")[0] == 0
    store = Store.open_readonly(run_dir)
    assert store.samples("dense", "factoid-qa") == before
    assert [s["prompt"] for s in store.samples("magnitude-70", "factoid-qa")] == [s["prompt"] for s in before]
    store.close()

    write_fq(fq, world[20:40])
    assert kick(*args, "0.7", "--force")[0] == 0  # --force starts over on the new data
    store = Store.open_readonly(run_dir)
    assert store.samples("dense", "factoid-qa")[0]["reference"] == world[20]["answers"][:1]
    store.close()


def test_an_edited_few_shot_file_is_refused_naming_it(tmp_path):
    from kick_hub.world.export import data_dir

    root = tmp_path / "data"
    shutil.copytree(data_dir() / "mmlu", root / "mmlu")
    run_dir = tmp_path / "run"
    args = ["bench", "--run-dir", str(run_dir), "--data", str(root), "--methods", "magnitude", "--patterns",
            "--tasks", "mcq-reasoning", "--limit", "6", "--sparsities", "0.5"]
    assert kick(*args)[0] == 0
    dev = sorted((root / "mmlu" / "dev").glob("*.csv"))[0]
    lines = dev.read_text(encoding="utf-8").splitlines(keepends=True)
    first = lines[0].rstrip("\n").rsplit(",", 1)
    lines[0] = f"{first[0]},{'B' if first[1] == 'A' else 'A'}\n"  # a few-shot example's answer changed
    dev.write_text("".join(lines), encoding="utf-8")
    code, _, err = kick(*args, "0.7")
    assert code == 2
    assert (f"holds results measured on other data than this run's: mcq-reasoning (mmlu/dev/{dev.name} changed): "
            f"use another --run-dir") in err
    assert labels(run_dir) == ["dense", "magnitude-50"]


def test_the_identity_is_the_same_in_another_process_and_place(tmp_path):
    from kick_hub.world.export import data_dir

    here = task_records.identity("icsum", "world", 4)
    assert here["files"] and all(not name.startswith("/") for name in here["files"])
    moved = tmp_path / "elsewhere"
    shutil.copytree(data_dir(), moved)
    code = ("import json, sys; from kick_hub.tasks.records import identity; "
            "print(json.dumps(identity('icsum', sys.argv[1], 4)))")
    out = subprocess.run([sys.executable, "-c", code, str(moved)], capture_output=True, text=True, check=True,
                         cwd=tmp_path)
    assert json.loads(out.stdout) == here  # content, not path: another folder, another process, the same identity
    assert task_records.identity("icsum", "world", 5)["digest"] != here["digest"]
    assert task_records.identity("icsum", str(tmp_path / "nothing-here"), 4) is None


def test_a_store_written_before_data_digests_is_still_resumed(tmp_path):
    """Task settings recorded without ``data`` (an older store) compare on what they hold."""
    run_dir = tmp_path / "run"
    args = ["bench", "--run-dir", str(run_dir), "--methods", "magnitude", "--patterns", "--tasks", "factoid-qa",
            "--limit", "3", "--sparsities", "0.5"]
    assert kick(*args)[0] == 0
    db = sqlite3.connect(run_dir / FILENAME)
    (raw,) = db.execute("SELECT value FROM meta WHERE key = 'task_settings'").fetchone()
    settings = json.loads(raw)
    del settings["factoid-qa"]["data"]
    db.execute("UPDATE meta SET value = ? WHERE key = 'task_settings'", (json.dumps(settings),))
    db.commit()
    db.close()
    assert kick(*args, "0.7")[0] == 0
    assert labels(run_dir) == ["dense", "magnitude-50", "magnitude-70"]


@pytest.mark.parametrize("limit", ["3"])
def test_another_limit_is_named_as_the_limit_not_as_other_data(tmp_path, limit):
    run_dir = tmp_path / "run"
    args = ["bench", "--run-dir", str(run_dir), "--methods", "magnitude", "--patterns", "--tasks", "factoid-qa",
            "--sparsities", "0.5", "--limit"]
    assert kick(*args, limit)[0] == 0
    code, _, err = kick(*args, "4")
    assert code == 2 and "was measured with limit=3 (factoid-qa); this run asks limit=4 (factoid-qa): use" in err
    assert "other data" not in err


def test_the_same_data_at_another_path_is_the_same_data(tmp_path):
    """A data file moved (or a run dir resumed on another machine, its data elsewhere): the content decides."""
    world = task_records.load("factoid-qa", "world")
    fq, run_dir = tmp_path / "fq.txt", tmp_path / "run"
    write_fq(fq, world[:6])
    args = ["bench", "--run-dir", str(run_dir), "--methods", "magnitude", "--patterns", "--tasks", "factoid-qa",
            "--limit", "6", "--sparsities", "0.5"]
    assert kick(*args, "--data", str(fq))[0] == 0
    moved = tmp_path / "elsewhere" / "fq.txt"  # the same name: the ids (fq-0, ...) are made from it
    moved.parent.mkdir()
    shutil.move(fq, moved)
    assert kick(*args, "0.7", "--data", str(moved))[0] == 0
    assert labels(run_dir) == ["dense", "magnitude-50", "magnitude-70"]
    store = Store.open_readonly(run_dir)
    assert store.settings()["data"] == str(fq)  # the results keep naming the source they were first measured on
    store.close()
    write_fq(moved, world[6:12])  # there, other questions: refused, naming the file as this run reads it
    code, _, err = kick(*args, "0.7", "--data", str(moved))
    assert code == 2 and "holds results measured on other data than this run's: factoid-qa (fq.txt changed)" in err
    renamed = moved.with_name("questions.txt")  # the same questions under another name: other ids, other records
    write_fq(renamed, world[:6])
    code, _, err = kick(*args, "0.7", "--data", str(renamed))
    assert code == 2 and "factoid-qa (questions.txt is new, fq.txt is gone)" in err
