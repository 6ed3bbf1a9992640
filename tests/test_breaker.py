"""Bad input a newcomer gives, each refused with one ``kick: error:`` line (exit 2) before any work and with nothing
left behind: a method typo, sweep values that give no cell or two cells of one label, a refused compress, a world
output that holds the user's files, a run dir or judge output that cannot be written, a read-only cache."""

import errno
import json

import pytest

from kick_hub.bench import plan
from kick_hub.cli import _read_only_error
from kick_hub.io import atomic_dir
from tests.kick_runner import kick


SWEEP = ["--tasks", "factoid-qa", "--limit", "4"]


@pytest.mark.unit
def test_a_method_typo_is_named_as_unknown(tmp_path):
    run_dir = tmp_path / "run"
    code, _, err = kick("bench", "--methods", "magnitde", "--sparsities", "0.5", "--patterns",
                        "--run-dir", str(run_dir), *SWEEP)
    assert code == 2
    assert f"kick: error: methods: unknown ['magnitde']; allowed: {list(plan.METHODS)}" in err
    assert not run_dir.exists()


@pytest.mark.unit
def test_sweep_values_give_one_cell_per_label_and_every_method_a_cell(tmp_path):
    assert [c.label for c in plan.plan(["magnitude", "magnitude"], [0.5, 0.5], ["2:4", "2:4"], [])] == [
        "dense", "magnitude-50", "magnitude-2of4"]
    with pytest.raises(ValueError, match=r"sparsities: 0.5 and 0.504 are both cell 'magnitude-50'"):
        plan.plan(["magnitude"], [0.5, 0.504], [], [])
    for methods, sparsities, bits in ((["wanda"], [], []), (["gptq"], [], [])):
        with pytest.raises(ValueError, match=f"methods: {methods[0]} gets no cell"):
            plan.plan(methods, sparsities, [], bits)
    run_dir = tmp_path / "run"
    code, _, err = kick("bench", "--methods", "magnitude", "--sparsities", "--patterns",
                        "--run-dir", str(run_dir), *SWEEP)
    assert code == 2 and "kick: error: methods: magnitude gets no cell" in err
    assert not run_dir.exists()


@pytest.mark.unit
def test_a_refused_compress_leaves_no_folder(tmp_path):
    out = tmp_path / "new" / "deeper" / "variant"
    code, _, err = kick("compress", "--model", str(tmp_path / "no-such-model"), "--method", "magnitude",
                        "--sparsity", "0.5", "--output", str(out))
    assert code == 2 and "kick: error: model: " in err
    assert not (tmp_path / "new").exists()
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n")
    code, _, err = kick("compress", "--model", "world", "--method", "magnitude", "--sparsity", "0.5",
                        "--output", str(a_file), "--overwrite")
    assert code == 2 and f"kick: error: output: {a_file} exists and is not a directory" in err
    assert a_file.read_text() == "mine\n"


@pytest.mark.unit
@pytest.mark.parametrize("command", [["world", "build"], ["world", "train", "--phase", "skills:1"]])
def test_world_outputs_never_replace_the_users_files(tmp_path, command):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious\n")
    code, _, err = kick(*command, "--output", str(mine))
    assert code == 2
    assert f"argument --output: '{mine}' exists and is a non-empty directory; give a new directory" in err
    assert (mine / "notes.txt").read_text() == "precious\n" and sorted(p.name for p in mine.iterdir()) == [
        "notes.txt"]
    code, _, err = kick(*command, "--output", str(mine / "notes.txt"))
    assert code == 2 and "exists and is a file; give a new directory" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


@pytest.mark.unit
def test_world_build_fills_an_empty_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = kick("world", "build", "--output", str(empty), "--n-known", "30", "--n-unseen", "20")
    assert code == 0, err
    assert json.loads((empty / "world.json").read_text())["sizes"]["known_people"] == 30


@pytest.mark.unit
def test_a_dir_replacing_a_file_leaves_no_hidden_copy(tmp_path):
    target = tmp_path / "out"
    target.write_text("old file\n")
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("new\n")
    assert (target / "a.txt").read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.unit
def test_import_lm_eval_names_a_run_dir_it_cannot_use(tmp_path):
    a_file = tmp_path / "run"
    a_file.write_text("")
    code, _, err = kick("import-lm-eval", str(tmp_path), "--run-dir", str(a_file), "--label", "dense")
    assert code == 2 and f"argument --run-dir: '{a_file}' exists and is not a directory" in err
    code, _, err = kick("import-lm-eval", str(tmp_path), "--run-dir", "/proc/kick-run", "--label", "dense")
    assert code == 2 and "argument --run-dir: '/proc/kick-run' is not writable" in err
    assert "Traceback" not in err


@pytest.mark.unit
def test_judge_output_and_cache_are_checked_before_any_request(tmp_path, monkeypatch):
    from kick_hub.harness.judge_samples import check_output

    with pytest.raises(ValueError, match=r"output: --output /proc/judge.json: /proc is not writable"):
        check_output("/proc/judge.json")
    assert check_output(tmp_path / "new" / "j.json") == tmp_path / "new" / "j.json"
    assert not (tmp_path / "new").exists()


@pytest.mark.unit
def test_evaluate_refuses_a_judge_cache_it_cannot_write(monkeypatch):
    monkeypatch.setenv("KICK_HUB_CACHE", "/proc/kick-cache")
    monkeypatch.setenv("OPENAI_API_KEY", "EMPTY")
    code, _, err = kick("evaluate", "--task", "instruction-following", "--limit", "2", "--judge", "openai:j",
                        "--judge-base-url", "http://127.0.0.1:9/v1")
    assert code == 2
    assert "kick: error: judge: the verdict cache /proc/kick-cache/judge-cache.sqlite cannot be written" in err


@pytest.mark.unit
def test_a_read_only_filesystem_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("KICK_HUB_CACHE", str(tmp_path / "cache"))
    inner = OSError(errno.EROFS, "Read-only file system", str(tmp_path / "cache" / "x"))
    try:
        try:
            raise inner
        except OSError as e:
            raise RuntimeError("saving failed") from e
    except RuntimeError as outer:
        line = _read_only_error(outer)
    assert line == (f"cannot write {tmp_path / 'cache' / 'x'}: read-only file system; it is in kick-hub's cache: "
                    "set KICK_HUB_CACHE to a writable folder")
    assert _read_only_error(OSError(errno.EROFS, "Read-only file system", "/elsewhere/y")) == (
        "cannot write /elsewhere/y: read-only file system")
    assert _read_only_error(OSError(errno.ENOENT, "No such file", "/x")) is None
    assert _read_only_error(ValueError("x")) is None
