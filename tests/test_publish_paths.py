"""Nothing kick-hub publishes carries a path of the machine it ran on (the model's or calibration file's absolute
path, the site-packages path of the `world` alias, the home directory), and a --base-model that is not a Hub repo id
is refused before any token or network step."""

import os
import shutil
from pathlib import Path

import pytest

import kick_hub
from kick_hub.cli import main
from kick_hub.engine import WORLD_MODEL_DIR
from tests.kick_runner import hub_kick

PACKAGE_ROOT = Path(kick_hub.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local_model(tmp_path_factory) -> Path:
    """The world model copied to an absolute path of its own, as a user's local checkpoint."""
    out = tmp_path_factory.mktemp("home") / "models" / "my-llama"
    shutil.copytree(WORLD_MODEL_DIR, out)
    return out


def machine_paths(*extra: Path) -> list[bytes]:
    paths = [str(WORLD_MODEL_DIR), str(PACKAGE_ROOT), str(Path(kick_hub.__file__).resolve().parent),
             os.path.expanduser("~"), *map(str, extra)]
    return [p.encode() for p in paths if p not in ("", "/")]


def leaks(data: bytes, paths: list[bytes]) -> list[str]:
    return [p.decode() for p in paths if p in data]


def test_manifest_names_no_local_path(local_model, tmp_path):
    calib = tmp_path / "calib" / "my-notes.txt"
    calib.parent.mkdir()
    calib.write_text("Kelma Loro was born in Zelmor. " * 400)
    out = tmp_path / "v"
    assert main(["compress", "--model", str(local_model), "--method", "wanda", "--sparsity", "0.5",
                 "--calibration", str(calib), "--nsamples", "4", "--seqlen", "64", "--output", str(out)]) == 0
    manifest = (out / "kick_manifest.json").read_text()
    from kick_hub.variant import load_manifest

    assert load_manifest(out)["base_model"] == "my-llama" and "base_model_path" not in manifest
    assert not leaks(manifest.encode(), machine_paths(local_model))
    assert main(["compress", "--model", "world", "--method", "magnitude", "--sparsity", "0.5", "--output",
                 str(tmp_path / "w")]) == 0
    world = (tmp_path / "w" / "kick_manifest.json").read_bytes()
    assert load_manifest(tmp_path / "w")["base_model"] == "world" and not leaks(world, machine_paths())

    from kick_hub.hub.card import variant_card
    from kick_hub.hub.push import public_manifest

    card = str(variant_card(out, "test-org/my-llama-wanda-50"))
    assert "my-notes.txt" in card and "--model my-llama" in card
    assert not leaks(card.encode(), machine_paths(local_model, calib))
    published = public_manifest(load_manifest(out))
    assert published["calibration"]["source"] == "my-notes.txt" and not leaks(str(published).encode(),
                                                                             machine_paths(calib))
    with pytest.raises(ValueError, match=r"base-model: must be ORG/NAME \(one '/'\), got 'not a repo id'"):
        variant_card(out, "test-org/x", base_model="not a repo id")
    with pytest.raises(ValueError, match="base-model: 'not a/repo id' is not a valid Hub repo id"):
        variant_card(out, "test-org/x", base_model="not a/repo id")


def test_push_and_bench_publish_no_machine_path(hub, local_model, tmp_path):  # noqa: F811
    calib = tmp_path / "calib.txt"
    calib.write_text("Kelma Loro was born in Zelmor. " * 400)
    variants = {"my-llama-wanda-50": tmp_path / "wanda", "world-magnitude-50": tmp_path / "world-magnitude"}
    assert main(["compress", "--model", str(local_model), "--method", "wanda", "--sparsity", "0.5", "--calibration",
                 str(calib), "--nsamples", "4", "--seqlen", "64", "--output", str(variants["my-llama-wanda-50"])]) == 0
    assert main(["compress", "--model", "world", "--method", "magnitude", "--sparsity", "0.5", "--output",
                 str(variants["world-magnitude-50"])]) == 0
    for name, path in variants.items():
        hub_kick(hub, "push", str(path), "--repo-id", f"test-org/{name}")
    run_dir = tmp_path / "run"
    hub_kick(hub, "bench", "--model", str(local_model), "--run-dir", str(run_dir), "--methods", "magnitude",
             "--sparsities", "0.5", "--patterns", "--bits", "--tasks", "factoid-qa", "perplexity", "--limit", "4",
             "--push", "test-org", "--results-repo", "test-org/kick-results")
    paths = machine_paths(local_model, calib, tmp_path)
    published = {(rtype, rid): hub.files(rid, rtype) for rtype, rid in list(hub._repos)}
    assert ("model", "test-org/my-llama-magnitude-50") in published
    assert any(p.startswith("results/my-llama/") for p in published[("dataset", "test-org/kick-results")])
    found = {f"{rid}/{name}": leaks(data, paths) for (_, rid), files in published.items()
             for name, data in files.items() if leaks(data, paths)}
    assert found == {}
    card = published[("model", "test-org/my-llama-magnitude-50")]["README.md"].decode()
    assert "| factoid-qa (knowledge) |" in card and "`my-llama`" in card
    local = {p.relative_to(run_dir).as_posix(): leaks(p.read_bytes(), paths)
             for p in [run_dir / "report.md", run_dir / "report.html", run_dir / "findings.json",
                       *(run_dir / "lm_eval").glob("*.json")]}
    assert all(not v for v in local.values()), local


def test_base_model_must_be_a_repo_id_before_any_token(hub, tmp_path):  # noqa: F811
    assert main(["compress", "--model", "world", "--method", "magnitude", "--sparsity", "0.5", "--output",
                 str(tmp_path / "v")]) == 0
    out = hub_kick(hub, "push", str(tmp_path / "v"), "--repo-id", "test-org/x", "--base-model", "not a repo id",
                   env={"HF_TOKEN": None}, expect=2)
    assert "kick: error: base-model: must be ORG/NAME (one '/'), got 'not a repo id'" in out.stderr
    assert "token" not in out.stderr
    out = hub_kick(hub, "push", str(tmp_path / "v"), "--repo-id", "test-org/x", "--base-model", "not a/repo id",
                   env={"HF_TOKEN": None}, expect=2)
    assert "kick: error: base-model: 'not a/repo id' is not a valid Hub repo id" in out.stderr
    assert hub.requests == []
