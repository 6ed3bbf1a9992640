"""Hessians that do not factorise (SparseGPT, GPTQ) and calibration statistics that are not finite (Wanda,
SparseGPT): a recorded damping fallback, or ``kick: error:`` naming the layer with nothing written; never a
traceback."""

import json
import re
import shutil

import pytest
import torch
from torch import nn

from kick_hub.cli import main
from kick_hub.compress.methods import sparsegpt
from kick_hub.compress.methods.sparsegpt import FactorisationError, damp_steps, fasterprune

ISSUE = ["compress", "--model", "world", "--method", "sparsegpt", "--sparsity", "0.5", "--damp", "1e-5",
         "--nsamples", "1", "--seqlen", "8"]
GPTQ_ISSUE = ["compress", "--model", "world", "--method", "gptq", "--bits", "4", "--group-size", "32", "--damp",
              "1e-5", "--nsamples", "1", "--seqlen", "8"]


def world_layers() -> set[str]:
    from kick_hub.compress.blockwise import decoder_layers, linear_layers
    from kick_hub.engine import load_model

    model, _ = load_model("world")
    return {f"layers.{i}.{n}" for i, b in enumerate(decoder_layers(model)) for n in linear_layers(b)}


def cli_error(argv: list[str], capsys) -> str:
    """Run ``kick`` in-process, expecting ``kick: error:`` and exit status 2; returns stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2, err
    assert "Traceback" not in out + err
    return err.split("kick: error: ", 1)[1]


def weights(variant) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(variant / "model.safetensors"))


# ----------------------------------------------------------------- SparseGPT's damping steps, one layer
def test_damp_steps_go_up_tenfold_to_the_bound():
    assert damp_steps(1e-5) == [1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0]
    assert damp_steps(0.03) == [0.03, 0.3, 1.0]
    assert damp_steps(0.5) == [0.5, 1.0]


def test_fasterprune_raises_damping_to_the_first_that_factorises():
    """H has eigenvalue -0.002 and mean diagonal 1: damp 1e-5, 1e-4, 1e-3 leave it indefinite, 1e-2 does not. The
    layer is then pruned exactly as with --damp 0.01."""
    H = torch.tensor([[1.0, 1.002], [1.002, 1.0]])
    torch.manual_seed(0)
    raised, direct = nn.Linear(2, 4), nn.Linear(2, 4)
    direct.load_state_dict(raised.state_dict())
    assert fasterprune(raised, H.clone(), 0.5, percdamp=1e-5, name="layers.0.x") == 0.01
    assert fasterprune(direct, H.clone(), 0.5, percdamp=0.01) == 0.01
    assert torch.equal(raised.weight, direct.weight)
    assert int((raised.weight == 0).sum()) >= 4  # the reference's `<=` threshold may take ties too


def test_fasterprune_refuses_an_indefinite_hessian_naming_the_layer():
    H = torch.tensor([[1.0, 5.0], [5.0, 1.0]])  # eigenvalue -4: no damping up to the mean diagonal helps
    layer = nn.Linear(2, 4)
    before = layer.weight.detach().clone()
    with pytest.raises(FactorisationError, match=r"layers\.3\.mlp\.down_proj's Hessian is not positive definite "
                                                 r"even with damp=1 \(requested 1e-05\).*--nsamples.*--damp"):
        fasterprune(layer, H, 0.5, percdamp=1e-5, name="layers.3.mlp.down_proj")
    assert torch.equal(layer.weight, before)


def test_fasterprune_names_non_finite_hessian_and_weight():
    with pytest.raises(FactorisationError, match=r"layers\.0\.q's Hessian holds NaN or inf"):
        fasterprune(nn.Linear(2, 4), torch.tensor([[1.0, float("inf")], [float("inf"), 1.0]]), 0.5, name="layers.0.q")
    layer = nn.Linear(2, 4)
    with torch.no_grad():
        layer.weight[1, 1] = float("nan")
    with pytest.raises(ValueError, match=r"model: layers\.0\.q's weight holds NaN or inf"):
        fasterprune(layer, torch.eye(2), 0.5, name="layers.0.q")


# ----------------------------------------------------------------- the issue's command, end to end
def test_issue_command_records_the_raised_damping_and_reproduces(tmp_path, capsys):
    from kick_hub.hub.card import reproduce_argv

    assert main([*ISSUE, "--output", str(tmp_path / "v")]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "wrote" in out
    manifest = json.loads((tmp_path / "v" / "kick_manifest.json").read_text())
    raised = manifest["damp_raised"]
    assert manifest["spec"]["damp"] == 1e-5 and raised
    assert set(raised) <= world_layers() and set(raised.values()) <= set(damp_steps(1e-5)[1:])
    for name, damp in raised.items():
        assert f"sparsegpt: {name}: Hessian not positive definite with damp=1e-05; used damp={damp:g}" in err
    # the card's reproduce command meets the same Hessians and raises the same layers to the same damping
    argv = reproduce_argv(manifest, base_model="world", output=str(tmp_path / "again"))
    assert main(argv[1:]) == 0
    again = json.loads((tmp_path / "again" / "kick_manifest.json").read_text())
    assert again["damp_raised"] == raised
    first, second = weights(tmp_path / "v"), weights(tmp_path / "again")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_unfactorisable_hessian_is_a_cli_error_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sparsegpt, "MAX_DAMP", 1e-5)  # the issue's damping is then also the last one tried
    message = cli_error([*ISSUE, "--output", str(tmp_path / "v")], capsys)
    found = re.match(r"calibration: (layers\.\d+\.[\w.]+)'s Hessian is not positive definite even with "
                     r"damp=1e-05 \(requested 1e-05\); give more calibration \(--nsamples / --seqlen\)", message)
    assert found and found[1] in world_layers(), message
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------- activations that overflow
@pytest.fixture(scope="module")
def overflowing(tmp_path_factory):
    """The world model with block 1's up_proj scaled by 1e30: down_proj's inputs (~1e28) are finite, their squares
    are not."""
    from kick_hub.engine import load_model

    model, tokenizer = load_model("world")
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight.mul_(1e30)
    path = tmp_path_factory.mktemp("overflow") / "model"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    yield path
    shutil.rmtree(path)


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_overflowing_statistics_name_the_layer(overflowing, method, tmp_path, capsys):
    message = cli_error(["compress", "--model", str(overflowing), "--method", method, "--sparsity", "0.5",
                         "--nsamples", "2", "--seqlen", "16", "--output", str(tmp_path / "v")], capsys)
    key = "scaler_row" if method == "wanda" else "H"
    assert message.startswith(f"calibration: layers.1.mlp.down_proj's {method} statistics ({key}) hold NaN or inf")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------- GPTQ: GPTQModel's own recovery, recorded
def test_gptq_issue_command_records_gptqmodels_damping(tmp_path, capsys):
    pytest.importorskip("gptqmodel", reason="install kick-hub[gptq]")
    assert main([*GPTQ_ISSUE, "--output", str(tmp_path / "v")]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    manifest = json.loads((tmp_path / "v" / "kick_manifest.json").read_text())
    raised = manifest["damp_raised"]
    assert manifest["spec"]["damp"] == 1e-5 and raised and manifest["hessian_floor"] == {}
    assert set(raised) <= world_layers() and all(1e-5 < d < 1 for d in raised.values())
    for name, damp in raised.items():
        assert f"gptq: {name}: Hessian not positive definite with damp=1e-05; GPTQModel used damp={damp:g}" in err


def test_gptq_overflowing_hessian_names_the_layer(overflowing, tmp_path, capsys):
    pytest.importorskip("gptqmodel", reason="install kick-hub[gptq]")
    message = cli_error(["compress", "--model", str(overflowing), "--method", "gptq", "--bits", "4",
                         "--group-size", "32", "--nsamples", "2", "--seqlen", "16", "--output", str(tmp_path / "v")],
                        capsys)
    assert message.startswith("calibration: layers.1.mlp.down_proj's Hessian holds NaN or inf")
    assert list(tmp_path.iterdir()) == []


def gptq_task(layer: nn.Linear):
    from gptqmodel.quantization.config import QuantizeConfig
    from gptqmodel.quantization.gptq import GPTQ

    task = GPTQ(layer, qcfg=QuantizeConfig(bits=4, group_size=32))
    task.quantizer.configure(bits=4, sym=True, perchannel=True)
    return task


def test_gptq_refuses_what_gptqmodel_would_round_to_nearest():
    """Where GPTQModel finds no inverse it rounds the layer to nearest; after a NaN loss it retries with an identity
    inverse. Both become errors."""
    pytest.importorskip("gptqmodel", reason="install kick-hub[gptq]")
    from kick_hub.compress.methods.gptq import recorded_hessian_inverse

    torch.manual_seed(0)
    raised, floor = {}, {}
    task = gptq_task(nn.Linear(32, 32))
    task.qcfg.damp_percent, task.qcfg.damp_auto_increment = 0.01, 0.0015  # as optimum's fasterquant sets them
    H = torch.eye(32)
    H[0, 1] = H[1, 0] = 5.0  # eigenvalue -4: beyond every damping and diagonal floor GPTQModel tries
    with recorded_hessian_inverse(raised, floor), pytest.raises(ValueError, match=r"Hessian is not positive "
                                                                 r"definite even after GPTQModel's recovery"):
        task.hessian_inverse(H)
    layer = nn.Linear(32, 32)
    with torch.no_grad():
        layer.weight[3, 4] = float("nan")
    task = gptq_task(layer)
    task.add_batch(torch.randn(1, 64, 32), None)
    with recorded_hessian_inverse(raised, floor), pytest.raises(ValueError, match=r"weight holds NaN or inf"):
        task.fasterquant(percdamp=0.01, group_size=32)
    assert raised == {} and floor == {}
