"""A finished run dir is read wherever it is: on read-only media (a read-only bind mount, or files without write
permission) every reader (``kick bench --status``, push-results' record, the card, the Space's tables and model
list) reads it and none calls it broken; copied or moved, its variants are its own (paths inside the store are
relative to the run dir)."""

import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from kick_hub.bench.store import FILENAME, Store, StoreError
from kick_hub.cli import main
from tests.kick_runner import kick

SMALL = ["--methods", "magnitude", "--sparsities", "0.5", "--patterns", "--tasks", "factoid-qa", "--limit", "5"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished little sweep: dense and magnitude-50 on 5 factoid-qa questions, variant kept."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert main(["bench", "--run-dir", str(run_dir), *SMALL]) == 0
    return run_dir


@contextmanager
def read_only(src: Path, where: Path):
    """``src`` seen read-only at ``where``: a read-only bind mount as root (root ignores permission bits), the
    write permission bits removed otherwise. Skips when neither can be made here."""
    if os.geteuid() != 0:
        where = src
        modes = {p: p.stat().st_mode for p in [src, *src.rglob("*")]}
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        try:
            yield where
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    where.mkdir()
    if subprocess.run(["mount", "--bind", str(src), str(where)], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount here (no CAP_SYS_ADMIN)")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(where)], capture_output=True).returncode != 0:
            pytest.skip("cannot remount read-only here")
        assert not os.access(where, os.W_OK)
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_every_reader_reads_a_run_dir_on_read_only_media(finished, tmp_path):
    from kick_hub.hub.card import results_from_run
    from kick_hub.hub.results import run_record
    from kick_hub.space import Models, leaderboard_frame, results_frame

    store = Store.open_readonly(finished)
    want = store.meta(), store.scores(), store.run_identity()
    store.close()
    want_record = run_record(finished)
    with read_only(finished, tmp_path / "ro") as ro:
        store = Store.open_readonly(ro)
        try:
            assert (store.meta(), store.scores(), store.run_identity()) == want
        finally:
            store.close()
        code, out, err = kick("bench", "--run-dir", str(ro), "--status")
        assert code == 0 and err == ""
        assert f"{ro}: model world, 2 cells done, variants kept: 1 of 1" in out
        assert "done  magnitude-50" in out and "kept" in out
        path, record = run_record(ro)  # what push-results uploads
        assert (path, record) == want_record
        assert set(results_frame(ro)["variant"]) == {"dense", "magnitude-50"}
        assert sorted(leaderboard_frame(ro)["variant"]) == ["dense", "magnitude-50"]
        models = Models(ro)
        assert models.choices == {"dense": "world", "magnitude-50": str(ro / "variants" / "magnitude-50")}
        from kick_hub.variant import load_manifest

        assert results_from_run(ro, load_manifest(ro / "variants" / "magnitude-50"))  # the card's results table
        # writing there is refused as such, before any work, and the store is not called broken
        code, _, err = kick("bench", "--run-dir", str(ro), *SMALL)
        assert code == 2 and "argument --run-dir" in err and "not writable" in err
        assert "not a readable" not in err


def test_unmerged_writes_of_a_killed_driver_are_read_on_read_only_media(finished, tmp_path):
    """A driver killed after a commit leaves the commit in ``results.sqlite-wal``: a reader on read-only media (no
    ``-shm`` can be made there) still sees it."""
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    code = ("import os, sqlite3, sys\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "db.execute(\"INSERT INTO runs (started, argv) VALUES (1.0, '[\\\"killed\\\"]')\")\n"
            "os._exit(0)  # no close: the commit stays in the -wal, unmerged\n")
    subprocess.run([sys.executable, "-c", code, str(copy / FILENAME)], check=True)
    assert (copy / f"{FILENAME}-wal").stat().st_size > 0
    with read_only(copy, tmp_path / "ro") as ro:
        store = Store.open_readonly(ro)
        try:
            argvs = [r[0] for r in store.db.execute("SELECT argv FROM runs ORDER BY id")]
            assert argvs[-1] == '["killed"]' and len(store.variants()) == 2
        finally:
            store.close()
        assert (ro / f"{FILENAME}-wal").stat().st_size > 0  # untouched


def test_only_a_file_that_is_no_store_is_called_broken(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / FILENAME).write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(StoreError, match="is not a readable kick-hub store"):
        Store.open_readonly(tmp_path / "junk")
    (tmp_path / "other").mkdir()
    sqlite3.connect(tmp_path / "other" / FILENAME).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(StoreError, match=r"is not a readable kick-hub store \(no kick-hub tables; it holds \['t'\]\)"):
        Store.open_readonly(tmp_path / "other")


def status_line(run_dir: Path) -> str:
    code, out, _ = kick("bench", "--run-dir", str(run_dir), "--status")
    assert code == 0
    return out.splitlines()[0]


def test_a_copied_run_dir_uses_its_own_variants(finished, tmp_path):
    from kick_hub.space import Models

    raw = sqlite3.connect(finished / FILENAME)
    stored = dict(raw.execute("SELECT label, path FROM variants").fetchall())
    raw.close()
    assert stored["magnitude-50"] == "./variants/magnitude-50"  # relative to the run dir
    original = tmp_path / "original"
    shutil.copytree(finished, original)
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(original, copy)
    shutil.rmtree(original / "variants")  # the original's variant is gone, the copy's is there
    assert status_line(copy).endswith("variants kept: 1 of 1")
    assert Models(copy).choices["magnitude-50"] == str(copy / "variants" / "magnitude-50")
    assert status_line(original).endswith("variants kept: 0 of 1")
    assert "magnitude-50" not in Models(original).choices
    store = Store.open_readonly(copy)
    assert {v["label"]: v["path"] for v in store.variants()}["magnitude-50"] == str(copy / "variants" / "magnitude-50")
    assert store.run_identity() == Store.open_readonly(original).run_identity()  # the same run, wherever it is
    store.close()


def test_an_older_store_with_absolute_paths_reads_the_copy_not_the_original(finished, tmp_path):
    """Stores written before paths were relative hold the original run dir's absolute variant paths: a copy maps
    them to its own ``variants/<label>`` even while the original is still there."""
    from kick_hub.space import Models

    original = tmp_path / "original"
    shutil.copytree(finished, original)
    db = sqlite3.connect(original / FILENAME)
    db.execute("UPDATE variants SET path = ? WHERE label = 'magnitude-50'",
               (str(original.resolve() / "variants" / "magnitude-50"),))
    db.commit()
    db.close()
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    shutil.rmtree(copy / "variants")
    assert "magnitude-50" not in Models(copy).choices  # not the original's, which is still there
    assert Models(original).choices["magnitude-50"] == str(original / "variants" / "magnitude-50")
