"""Atomic writes leave files and dirs with the mode a plain ``open`` / ``mkdir`` gives under the umask, not
tempfile's private 0600 / 0700 (a shared run dir or task folder must stay readable to the others sharing it)."""

import os
import stat
import tempfile

import pytest

from kick_hub.io import atomic_dir, atomic_write_text, write_json

pytestmark = pytest.mark.unit  # needs no model: the fast tier (`pytest -m unit`)


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                        (0o002, 0o664, 0o775)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        text = atomic_write_text(tmp_path / "report.md", "# report\n")
        js = write_json(tmp_path / "out" / "results.json", {"x": float("inf")})
        with atomic_dir(tmp_path / "variant") as d:
            (d / "kick_manifest.json").write_text("{}")
            os.close(tempfile.mkstemp(dir=d, suffix=".safetensors")[0])  # a library writing through tempfile
        replaced = tmp_path / "old.md"
        replaced.write_text("old")
        os.chmod(replaced, 0o600)  # a replaced file is a new file: it takes the umask's mode
        atomic_write_text(replaced, "new")
    finally:
        os.umask(old)
    for path in (text, js, replaced):
        assert stat.S_IMODE(os.stat(path).st_mode) == file_mode, path
    assert stat.S_IMODE(os.stat(tmp_path / "variant").st_mode) == dir_mode
    for path in (tmp_path / "variant").iterdir():
        assert stat.S_IMODE(os.stat(path).st_mode) == file_mode, path
    assert replaced.read_text() == "new" and (tmp_path / "variant" / "kick_manifest.json").exists()
