"""kick-hub as a wheel, not a checkout: build it, install it into a throwaway folder, and from there publish the
evaluate modules to the loopback Hub (tests/hub_server.py) and resolve the ``stories260k`` alias; the published
``perplexity`` module then loads from the Hub and computes where kick_hub cannot be imported."""

import json
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.hub_server import HubServer, run_client
from tests.test_metrics_modules import BLOCKER

ROOT = Path(__file__).resolve().parents[1]
TEXT = "Please give answer to this question: Where was Kelma Loro born?"
SOURCES = ("pyproject.toml", "README.md", "kick_hub", "evaluate_metrics")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from a copy of the checkout (links kept, no build files left in the checkout), installed
    with ``pip install --no-deps --target``."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir() and not (ROOT / name).is_symlink():
            shutil.copytree(ROOT / name, src / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name, follow_symlinks=False)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp / "dist"),
                          str(src)], check=True, capture_output=True, timeout=600, cwd=tmp)
    (wheel,) = (tmp / "dist").glob("kick_hub-*.whl")
    subprocess.run(pip + ["install", "--no-deps", "--no-index", "--target", str(tmp / "site"), str(wheel)],
                   check=True, capture_output=True, timeout=600, cwd=tmp)
    (tmp / "elsewhere").mkdir()
    return tmp


def in_installed(hub: HubServer | None, installed: Path, code: str, env: dict | None = None):
    """Run ``code`` with only the installed wheel's kick_hub importable (PYTHONPATH first, cwd away from the
    checkout); returns the last ``RESULT`` line's JSON."""
    prelude = (f"import os, sys, json\nos.chdir({str(installed / 'elsewhere')!r})\n"
               "sys.path[:] = [p for p in sys.path if p not in ('', '.')]\n"
               "import kick_hub\n"
               f"assert kick_hub.__file__.startswith({str(installed / 'site')!r}), kick_hub.__file__\n"
               "def emit(obj):\n    print('RESULT ' + json.dumps(obj))\n")
    env = {"PYTHONPATH": str(installed / "site"), **(env or {})}
    if hub is None:
        import os

        proc = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=300,
                              env={**os.environ, **env})
    else:
        proc = run_client(hub, prelude + code, env=env, timeout=600)
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("RESULT ")][-1][7:])


def test_wheel_holds_the_modules_as_real_files(installed):
    (wheel,) = (installed / "dist").glob("kick_hub-*.whl")
    with zipfile.ZipFile(wheel) as z:
        infos = {i.filename: i for i in z.infolist()}
        assert not [n for n, i in infos.items() if stat.S_ISLNK(i.external_attr >> 16)]
        assert not [n for n in infos if "__pycache__" in n]
        modules = ROOT / "kick_hub" / "evaluate_metrics"
        for folder in sorted(p for p in modules.iterdir() if (p / f"{p.name}.py").is_file()):
            for f in sorted(folder.iterdir()):
                if f.is_file() and f.suffix != ".pyc":
                    name = f"kick_hub/evaluate_metrics/{folder.name}/{f.name}"
                    assert z.read(name) == f.read_bytes(), name  # a link holds its target's bytes
    installed_qa = installed / "site" / "kick_hub" / "evaluate_metrics" / "factoid_qa" / "kick_qa.py"
    assert not installed_qa.is_symlink() and installed_qa.read_bytes() == (ROOT / "kick_hub/scoring/qa.py").read_bytes()


def test_publish_tasks_from_the_installed_wheel(installed, hub):
    out = in_installed(hub, installed, "from kick_hub.cli import main\n"
                                       "rc = main(['publish-tasks', '--org', 'llmkick'])\n"
                                       "emit({'rc': rc})\n")
    assert out == {"rc": 0}
    for folder in ("factoid_qa", "perplexity"):
        space = f"llmkick/{folder.replace('_', '-')}"
        files = hub.files(space, "space")
        local = ROOT / "evaluate_metrics" / folder
        assert files[f"{folder.replace('_', '-')}.py"] == (local / f"{folder}.py").read_bytes()
        link = next(p for p in local.iterdir() if p.name.startswith("kick_"))
        assert files[link.name] == link.resolve().read_bytes()
    # The published perplexity module, loaded from the Hub where kick_hub cannot be imported.
    model = ROOT / "kick_hub" / "world" / "model"
    code = BLOCKER + (
        "import json, evaluate\n"
        "m = evaluate.load('llmkick/perplexity')\n"
        f"print('RESULT ' + json.dumps(m.compute(predictions=[{TEXT!r}], model_id={str(model)!r})))\n")
    proc = run_client(hub, code, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads([line for line in proc.stdout.splitlines() if line.startswith("RESULT ")][-1][7:])
    from kick_hub.engine import Engine

    lib = Engine.from_name(str(model)).perplexity([TEXT])
    assert got["perplexity"] == pytest.approx(lib["perplexity"], rel=1e-5) and got["tokens"] == lib["tokens"]


def test_stories260k_alias_from_the_installed_wheel(installed, tmp_path):
    code = ("from kick_hub import models\n"
            "try:\n    models.resolve('stories260k')\n    err = None\n"
            "except ValueError as e:\n    err = str(e)\n"
            "emit({'checkout': str(models.checkout_root()), 'error': err})\n")
    empty = tmp_path / "empty-cache"
    out = in_installed(None, installed, code, env={"KICK_HUB_CACHE": str(empty), "KICK_STORIES260K": ""})
    assert out["checkout"] == "None"
    assert "KICK_STORIES260K" in out["error"] and str(empty / "models" / "stories260K") in out["error"]
    cached = tmp_path / "cache" / "models" / "stories260K"
    shutil.copytree(ROOT / "kick_hub" / "world" / "model", cached)  # any HF Llama directory stands in
    code = "from kick_hub import models\nemit({'path': models.resolve('stories260k')})\n"
    out = in_installed(None, installed, code, env={"KICK_HUB_CACHE": str(tmp_path / "cache"), "KICK_STORIES260K": ""})
    assert out["path"] == str(cached)
