"""A full disk: ``kick compress`` refuses before any model work when its output would not fit (sizes in readable
units), ``kick bench`` says both sizes readably, and a save that runs out of space midway (variant, text files) is
one ``kick: error:`` line with nothing left behind. Real small filesystems (tmpfs, mounted when this process may;
skipped otherwise) and the real ``kick`` command on the shipped world model. Also ``--data hub`` /
``--calibration wikitext2`` with the datasets offline flag: one line naming the option."""

import os
import re
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from kick_hub.io import NoSpaceError, atomic_path, atomic_write_text, format_size, no_space
from tests.kick_runner import Run, kick

PAGE = 4096


@contextmanager
def tmpfs(where: Path, size: int):
    """A tmpfs of ``size`` bytes (rounded up to pages) mounted at ``where``; the test is skipped where mounting is
    not permitted (not root, no CAP_SYS_ADMIN)."""
    where.mkdir(parents=True, exist_ok=True)
    size = -(-size // PAGE) * PAGE
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def one_error_line(proc: Run) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("kick: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def mib(text: str) -> float:
    number, unit = text.split()
    return float(number) * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}[unit]


@pytest.mark.unit
def test_format_size_is_readable():
    assert [format_size(n) for n in (512, 3277, 8 * 2 ** 20, 14.69e6, 1.5 * 2 ** 30, 1000 * 1024)] == [
        "512 B", "3.20 KiB", "8.00 MiB", "14.0 MiB", "1.50 GiB", "1000 KiB"]


def test_compress_that_cannot_fit_stops_before_any_model_work(tmp_path):
    with tmpfs(tmp_path / "fs", 8 * 2 ** 20) as fs:
        proc = kick("compress", "--model", "world", "--method", "wanda", "--sparsity", "0.5",
                    "--output", str(fs / "wanda-50"))
        line = one_error_line(proc)
        m = re.fullmatch(r"kick: error: output: (\S+ \S+) free on (\S+) but the wanda-50 variant of world needs "
                         r"about (\S+ \S+); free some space or choose another --output", line)
        assert m, line
        assert m[2] == str(fs.resolve())
        assert 7.5 < mib(m[1]) <= 8.0 and 14.0 < mib(m[3]) < 15.5  # 3.67 M float32 weights + tokenizer + ids
        assert "wrote" not in proc.stdout
        assert os.listdir(fs) == []


def test_compress_that_runs_out_of_space_while_saving_leaves_nothing(tmp_path):
    """A filesystem with room for the estimate (parameters x 4 bytes + tokenizer) but not for the config, the
    safetensors header and each file's last page: the check passes, the save fails midway."""
    from kick_hub.compress import CompressSpec
    from kick_hub.variant import variant_bytes

    need = variant_bytes("world", None, CompressSpec("magnitude", sparsity=0.5))
    with tmpfs(tmp_path / "fs", need) as fs:
        proc = kick("compress", "--model", "world", "--method", "magnitude", "--sparsity", "0.5",
                    "--output", str(fs / "magnitude-50"))
        line = one_error_line(proc)
        assert line.startswith(f"kick: error: no space left on device writing {fs / 'magnitude-50'}: "), line
        assert f"free on {fs.resolve()}; the partial files were removed, nothing was written" in line
        assert os.listdir(fs) == []  # neither the variant nor its temp dir


def test_variant_save_on_a_full_disk_raises_no_space_and_leaves_nothing(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kick_hub.engine import WORLD_MODEL_DIR
    from kick_hub.variant import save

    model = AutoModelForCausalLM.from_pretrained(WORLD_MODEL_DIR)
    tokenizer = AutoTokenizer.from_pretrained(WORLD_MODEL_DIR)
    with tmpfs(tmp_path / "fs", 2 * 2 ** 20) as fs:
        with pytest.raises(NoSpaceError, match=r"no space left on device writing .*/out: .* free on ") as err:
            save(model, tokenizer, fs / "out", {"method": "none"})
        assert no_space(err.value.__cause__)  # safetensors' own error, kept as the cause
        assert os.listdir(fs) == []


@pytest.mark.unit
def test_text_write_on_a_full_disk_leaves_nothing(tmp_path):
    with tmpfs(tmp_path / "fs", 64 * 1024) as fs:
        (fs / "filler").write_bytes(b"\0" * (64 * 1024 - PAGE))
        with pytest.raises(NoSpaceError, match="no space left on device writing"):
            atomic_write_text(fs / "report.md", "x" * 3 * PAGE)
        assert os.listdir(fs) == ["filler"]
        with pytest.raises(NoSpaceError, match=r"writing .*sparsity\.png: "):  # how the sweep plots are saved
            with atomic_path(fs / "sparsity.png") as tmp:
                tmp.write_bytes(b"\x89PNG" * PAGE)
        assert os.listdir(fs) == ["filler"]
        # the CLI: harness task YAMLs written through the same writer
        proc = kick("lm-eval-tasks", "--output", str(fs / "tasks"))
        line = one_error_line(proc)
        assert "no space left on device writing" in line and "nothing was written" in line
        assert sorted(os.listdir(fs)) in (["filler"], ["filler", "tasks"])
        assert not any(p.name.startswith(".") for p in fs.rglob("*"))  # no temp file left


def test_bench_that_cannot_fit_says_both_sizes_readably(tmp_path):
    with tmpfs(tmp_path / "fs", 8 * 2 ** 20) as fs:
        proc = kick("bench", "--run-dir", str(fs / "run"), "--methods", "magnitude", "--sparsities", "0.5",
                    "--tasks", "factoid-qa", "--limit", "2")
        line = one_error_line(proc)
        m = re.search(r"has (\S+ \S+) free but the sweep needs about (\S+ \S+) \((\d+) variants x (\S+ \S+),", line)
        assert m, line
        assert 7.0 < mib(m[1]) <= 8.0 and 14.0 < mib(m[4]) < 15.0
        assert mib(m[2]) == pytest.approx(int(m[3]) * mib(m[4]), rel=0.01)
        assert not (fs / "run" / "variants").exists()


@pytest.mark.parametrize("argv, field", [
    (["evaluate", "--model", "world", "--data", "hub", "--task", "factoid-qa", "--limit", "1"], "data"),
    (["compress", "--model", "world", "--method", "wanda", "--sparsity", "0.5", "--calibration", "wikitext2",
      "--nsamples", "2", "--seqlen", "32"], "calibration"),
])
def test_hub_dataset_offline_is_one_line_naming_the_option(argv, field, tmp_path):
    if argv[0] == "compress":
        argv = [*argv, "--output", str(tmp_path / "out")]
    env = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "home")}  # nothing cached
    line = one_error_line(kick(*argv, env=env, subprocess=True))  # datasets reads HF_HOME etc. when imported
    assert line.startswith(f"kick: error: {field}: the Hub dataset ")
    assert "is not in the local cache and the datasets offline flag is set" in line
    assert not (tmp_path / "out").exists()
