"""Method plugins (kick_hub/compress/api.py, registry.find_plugin): the OWL example installed from examples/owl into
a folder of its own and run in a sweep beside Wanda through its entry point; plugins named ``package.module:name``
that fail (raise, reshape, compress nothing) failing their cell only, with their name, in the store's failed table;
``--method-arg`` typed by the plugin and part of the label, manifest, card and sweep identity."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest

from kick_hub.bench.store import Store
from kick_hub.io import loads
from tests.conftest import ROOT
from tests.kick_runner import kick

TASKS = ("--tasks", "factoid-qa", "perplexity", "--limit", "8")
CALIB = ("--nsamples", "4", "--seqlen", "64")

BAD_PLUGINS = '''
import torch


class Raises:
    name = "raiser"
    kind = "pruning"
    calibrated = False

    @staticmethod
    def apply(model, spec, calibration, progress, device):
        raise RuntimeError("the criterion diverged")


class Reshapes:
    name = "reshaper"
    kind = "pruning"
    calibrated = False

    @staticmethod
    def apply(model, spec, calibration, progress, device):
        layer = model.model.layers[0].mlp.down_proj
        layer.weight = torch.nn.Parameter(layer.weight.data[:, :8].clone())
        return model


class Noop:
    name = "noop"
    kind = "pruning"
    calibrated = False

    @staticmethod
    def apply(model, spec, calibration, progress, device):
        return model


class Typed:
    name = "typed"
    kind = "pruning"
    calibrated = False
    version = "2.0"

    @staticmethod
    def check_args(args):
        unknown = sorted(set(args) - {"scale"})
        if unknown:
            raise ValueError(f"unknown {unknown}; typed takes scale")
        try:
            scale = int(args.get("scale", 1))
        except ValueError:
            raise ValueError(f"scale must be an integer, got {args['scale']!r}") from None
        return {"scale": scale}

    @staticmethod
    def apply(model, spec, calibration, progress, device):
        from kick_hub.compress.api import prunable_layers, threshold_mask, weight_view

        for layer in prunable_layers(model).values():
            W = weight_view(layer)
            W[threshold_mask(W.abs(), spec.sparsity)] = 0
        return model
'''


@pytest.fixture()
def bad_plugins(tmp_path, monkeypatch) -> str:
    """A module ``bad_plugins`` on sys.path with the plugins above; returns its name."""
    (tmp_path / "bad_plugins.py").write_text(BAD_PLUGINS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "bad_plugins"


def test_failing_plugins_fail_their_cells_only(tmp_path, bad_plugins):
    run_dir = tmp_path / "run"
    code, out, err = kick("bench", "--run-dir", str(run_dir), "--methods", "magnitude", f"{bad_plugins}:Raises",
                          f"{bad_plugins}:Reshapes", f"{bad_plugins}:Noop", "--sparsities", "0.5", "--patterns",
                          *TASKS)
    assert code == 1, err[-3000:]
    store = Store.open_readonly(run_dir)
    try:
        failed = {f["label"]: f for f in store.failed()}
        done = store.done()
    finally:
        store.close()
    assert set(failed) == {"raiser-50", "reshaper-50", "noop-50"}
    assert "method plugin raiser (bad_plugins:Raises) failed: RuntimeError: the criterion diverged" in \
        failed["raiser-50"]["error"]
    assert "method plugin reshaper (bad_plugins:Reshapes) returned a model with other shapes" in \
        failed["reshaper-50"]["error"] and "down_proj.weight (256, 768) -> (256, 8)" in failed["reshaper-50"]["error"]
    assert "method plugin noop (bad_plugins:Noop) pruned none of the model's layers" in failed["noop-50"]["error"]
    assert failed["noop-50"]["tasks"] == ["factoid-qa", "perplexity"]
    assert done["magnitude-50"] == {"factoid-qa", "perplexity"} and "| magnitude-50 |" in \
        (run_dir / "report.md").read_text()
    assert "failed noop-50 after 1 attempt(s): method plugin noop" in err


def test_method_args_are_typed_and_part_of_label_manifest_identity_and_card(tmp_path, bad_plugins):
    from kick_hub.compress import CompressSpec
    from kick_hub.hub.card import reproduce_argv, variant_card

    ref = f"{bad_plugins}:Typed"
    code, _, err = kick("compress", "--method", ref, "--sparsity", "0.5", "--method-arg", "scale=x",
                        "--output", str(tmp_path / "bad"))
    assert code == 2 and "kick: error: method-arg: method plugin typed: scale must be an integer, got 'x'" in err
    code, _, err = kick("compress", "--method", "wanda", "--sparsity", "0.5", "--method-arg", "scale=3",
                        "--output", str(tmp_path / "bad"))
    assert code == 2 and "method-arg: only method plugins take --method-arg; 'wanda' is built in" in err
    code, _, err = kick("compress", "--method", "nosuch", "--sparsity", "0.5", "--output", str(tmp_path / "bad"))
    assert code == 2 and "method: must be one of" in err and "package.module:name of a method plugin" in err
    assert not (tmp_path / "bad").exists()

    run_dir = tmp_path / "run"
    code, _, err = kick("bench", "--run-dir", str(run_dir), "--methods", ref, "--sparsities", "0.5", "--patterns",
                        "--method-arg", "scale=3", *TASKS)
    assert code == 0, err[-3000:]
    manifest = loads((run_dir / "variants" / "typed-50-scale3" / "kick_manifest.json").read_text())
    assert manifest["spec"]["args"] == {"scale": 3} and manifest["spec"]["plugin"] == ref
    assert manifest["plugin"] == {"name": "typed", "ref": ref, "kind": "pruning", "distribution": None,
                                  "version": "2.0"}
    assert manifest["sparsity"] == pytest.approx(0.5, abs=0.01)
    card = str(variant_card(run_dir / "variants" / "typed-50-scale3", "test-org/world-typed", run_dir).content)
    assert f"| method | `typed` (method plugin `{ref}`, None 2.0) |" in card
    assert "50% unstructured sparsity, scale=3" in card
    assert reproduce_argv(manifest)[4:8] == ["--method", ref, "--method-arg", "scale=3"]
    # another value of an argument is another cell; the same label with another value would be a settings change
    spec = CompressSpec("typed", sparsity=0.5, args={"scale": "3"}, plugin=ref)
    assert spec.args == (("scale", 3),) and spec.label == "typed-50-scale3"
    assert pickle.loads(pickle.dumps(spec)) == spec  # a Ray worker rebuilds it (and registers the plugin)
    store = Store.open_readonly(run_dir)
    try:
        diffs = store.differences({}, {}, {"typed-50-scale3": {**spec.to_dict(), "args": {"scale": 4}}})
    finally:
        store.close()
    assert ("args (typed-50-scale3)", {"scale": 3}, {"scale": 4}) in diffs


def test_owl_example_installed_runs_beside_wanda(tmp_path):
    """examples/owl installed (pip --no-deps --target) into a folder of its own, found through its entry point in a
    fresh interpreter with that folder on PYTHONPATH: compress the world model, then a sweep beside Wanda."""
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--quiet",
                           "--target", str(target), str(ROOT / "examples" / "owl")], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)])}

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "kick_hub.cli", *argv], env=env, capture_output=True,
                              text=True, timeout=900)

    owl = run("compress", "--method", "owl", "--sparsity", "0.5", "--method-arg", "M=5", *CALIB,
              "--output", str(tmp_path / "owl-50"))
    assert owl.returncode == 0, owl.stderr[-3000:]
    assert "wrote" in owl.stdout and "owl-50, sparsity 0.4" in owl.stdout
    manifest = loads((tmp_path / "owl-50" / "kick_manifest.json").read_text())
    assert manifest["plugin"] == {"name": "owl", "ref": "kick_owl:OWL", "kind": "pruning",
                                  "distribution": "kick-owl", "version": "0.1.0"}
    assert manifest["versions"]["kick-owl"] == "0.1.0"
    ratios = manifest["owl_block_sparsity"]
    # OWL's block sparsities: spread over 2 lam (0.16, the default lam), their mean the target
    assert len(ratios) == 4 and max(ratios) - min(ratios) == pytest.approx(0.16, abs=1e-5)
    assert sum(ratios) / 4 == pytest.approx(0.5, abs=1e-5)

    run_dir = tmp_path / "run"
    sweep = run("bench", "--run-dir", str(run_dir), "--methods", "wanda", "owl", "--sparsities", "0.5",
                "--patterns", "--method-arg", "M=5", *CALIB, *TASKS)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    report = (run_dir / "report.md").read_text()
    paired = report.split("## Paired differences against dense")[1].split("\n## ")[0]
    for label in ("wanda-50", "owl-50"):
        row = next(line for line in paired.splitlines() if line.startswith(f"| {label} |"))
        assert "McNemar" in row and "sign-flip" in row
    first = report.split("## First sparsity with a significant loss")[1].split("\n## ")[0]
    assert "owl: significant" in first and "wanda: significant" in first
    # OWL's cell is Wanda's criterion at other block sparsities: other weights, so other perplexity
    store = Store.open_readonly(run_dir)
    try:
        scores = store.scores()
        rows = {v["label"]: v for v in store.variants()}
    finally:
        store.close()
    assert rows["owl-50"]["method"] == "owl" and rows["owl-50"]["sparsity"] == 0.5
    assert scores["owl-50"]["perplexity"]["perplexity"] != scores["wanda-50"]["perplexity"]["perplexity"]
    # the same OWL weights whether run by the sweep or by kick compress
    sweep_manifest = loads((run_dir / "variants" / "owl-50" / "kick_manifest.json").read_text())
    assert sweep_manifest["owl_block_sparsity"] == ratios
