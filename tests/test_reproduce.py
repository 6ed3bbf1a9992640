"""The model card's "How to reproduce" command: it parses with kick's own parser into the manifest's spec and
calibration settings, and running it rebuilds the variant's weights bit for bit."""

import dataclasses
import hashlib
import shlex

import pytest
import torch

from kick_hub.cli import build_parser, compress_spec, main
from kick_hub.compress import CompressSpec
from kick_hub.hub import card
from kick_hub.variant import CALIBRATION_FILE, load_manifest


def manifest_for(spec: CompressSpec, calibration: dict | None = None, **extra) -> dict:
    return {"base_model": "world", "method": spec.method, "label": spec.label, "spec": spec.to_dict(),
            "calibration": calibration, "storage": "dense", **extra}


def calib(source: str = "world", nsamples: int = 4, seqlen: int = 64, seed: int = 0) -> dict:
    return {"source": source, "nsamples": nsamples, "seqlen": seqlen, "seed": seed, "ids_sha256": "0" * 64,
            "file": CALIBRATION_FILE}


def parse(argv: list[str]):
    assert argv[:2] == ["kick", "compress"]
    args = build_parser().parse_args(argv[1:])
    return args, compress_spec(args)


CASES = {
    "magnitude": (manifest_for(CompressSpec("magnitude", sparsity=0.7)),
                  ["--method", "magnitude", "--sparsity", "0.7"]),
    "global-sparse-storage": (manifest_for(CompressSpec("magnitude-global", sparsity=0.3), storage="sparse"),
                              ["--method", "magnitude-global", "--sparsity", "0.3", "--storage", "sparse"]),
    "random-seed": (manifest_for(CompressSpec("random", sparsity=0.123456789, seed=7)),
                    ["--method", "random", "--sparsity", "0.123456789", "--seed", "7"]),
    "wanda-2of4": (manifest_for(CompressSpec("wanda", pattern="2:4", seed=5), calib(seed=5)),
                   ["--method", "wanda", "--pattern", "2:4", "--seed", "5", "--calibration", "world", "--nsamples",
                    "4", "--seqlen", "64"]),
    "sparsegpt-every-option": (
        manifest_for(CompressSpec("sparsegpt", pattern="4:8", damp=0.05, blocksize=64), calib("c4", 16, 128)),
        ["--method", "sparsegpt", "--pattern", "4:8", "--damp", "0.05", "--blocksize", "64",
         "--calibration", "c4", "--nsamples", "16", "--seqlen", "128"]),
    "gptq-every-option": (
        manifest_for(CompressSpec("gptq", bits=3, group_size=-1, desc_act=True, sym=False, damp=0.1, seed=2),
                     calib("wikitext2", 8, 32, seed=2), threads=3),
        ["--method", "gptq", "--bits", "3", "--group-size", "-1", "--desc-act", "--asym", "--damp", "0.1", "--seed",
         "2", "--calibration", "wikitext2", "--nsamples", "8", "--seqlen", "32", "--threads", "3"]),
    "gptq-local-text": (manifest_for(CompressSpec("gptq", bits=4, group_size=64), calib("/data/my corpus.txt")),
                        ["--method", "gptq", "--bits", "4", "--group-size", "64", "--calibration", CALIBRATION_FILE,
                         "--nsamples", "4", "--seqlen", "64"]),
    "int8": (manifest_for(CompressSpec("int8")), ["--method", "int8"]),
    "nf4": (manifest_for(CompressSpec("nf4")), ["--method", "nf4"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_command_parses_back_into_the_manifest(name):
    manifest, options = CASES[name]
    argv = card.reproduce_argv(manifest)
    assert argv == ["kick", "compress", "--model", "world", *options, "--output", "DIR"]
    args, spec = parse(argv)
    assert spec == CompressSpec(**manifest["spec"])
    assert spec.to_dict() == manifest["spec"]
    assert args.model == "world" and str(args.output) == "DIR" and args.storage == manifest["storage"]
    assert args.threads == manifest.get("threads")
    c = manifest["calibration"]
    if c:
        assert (args.nsamples, args.seqlen) == (c["nsamples"], c["seqlen"]) and spec.seed == c["seed"]
        assert args.calibration == (c["source"] if c["source"] in ("c4", "wikitext2", "world") else CALIBRATION_FILE)
    else:
        assert (args.nsamples, args.seqlen) == (None, None)


def test_base_model_and_quoting():
    manifest, _ = CASES["magnitude"]
    argv = card.reproduce_argv({**manifest, "base_model": "/models/my llama"}, output="out dir")
    assert argv[2:4] == ["--model", "my llama"] and argv[-2:] == ["--output", "out dir"]
    assert shlex.split(shlex.join(argv)) == argv
    assert card.reproduce_argv(manifest, "org/base")[2:4] == ["--model", "org/base"]
    text = card.reproduce_text({**manifest, "base_model": "/models/my-llama"}, "my-llama")
    assert "`my-llama` names a local model directory" in text and "/models" not in text
    text = card.reproduce_text(CASES["gptq-local-text"][0], "world")
    assert f"`{CALIBRATION_FILE}` is this repo's file" in text and "/data" not in text and "corpus" not in text
    assert "same kind of CPU and as many torch threads as the original run" in text
    assert "3 torch threads (`--threads`)" in card.reproduce_text(CASES["gptq-every-option"][0], "world")
    assert "threads" not in card.reproduce_text(CASES["wanda-2of4"][0], "world")


def test_a_spec_field_without_an_option_is_refused(monkeypatch):
    monkeypatch.setattr(card, "SPEC_OPTIONS", {k: v for k, v in card.SPEC_OPTIONS.items() if k != "blocksize"})
    spec = CompressSpec("sparsegpt", sparsity=0.5, blocksize=64)
    with pytest.raises(ValueError, match="blocksize=64 has no `kick compress` option"):
        card.reproduce_argv(manifest_for(spec, calib()))
    assert "--blocksize" not in card.reproduce_argv(manifest_for(CompressSpec("sparsegpt", sparsity=0.5), calib()))


def test_every_spec_field_has_an_option_of_kick_compress():
    options = {a for action in build_parser()._subparsers._group_actions[0].choices["compress"]._actions
               for a in action.option_strings}
    fields = {f.name for f in dataclasses.fields(CompressSpec)} - {"method"}
    assert set(card.SPEC_OPTIONS) == fields and set(card.SPEC_OPTIONS.values()) <= options


def tensor_hashes(folder) -> dict[str, str]:
    """sha256 of every tensor of every weight file (not the calibration ids), by file and tensor name."""
    from safetensors import safe_open

    out = {}
    for path in sorted(folder.glob("*.safetensors")):
        if path.name == CALIBRATION_FILE:
            continue
        with safe_open(str(path), "pt") as fh:
            for key in fh.keys():
                t = fh.get_tensor(key).contiguous()
                out[f"{path.name}:{key}"] = hashlib.sha256(t.view(-1).view(torch.uint8).numpy().tobytes()).hexdigest()
    return out


BUILDS = {
    "magnitude-50": ["--method", "magnitude", "--sparsity", "0.5", "--storage", "sparse"],
    "wanda-2of4": ["--method", "wanda", "--pattern", "2:4", "--seed", "5", "--calibration", "world", "--nsamples",
                   "4", "--seqlen", "64"],
    "sparsegpt-damp": ["--method", "sparsegpt", "--sparsity", "0.5", "--damp", "0.05", "--blocksize", "64",
                       "--nsamples", "4", "--seqlen", "64"],
    "gptq-g64-act": ["--method", "gptq", "--bits", "4", "--group-size", "64", "--desc-act", "--nsamples", "4",
                     "--seqlen", "64"],
}


@pytest.mark.parametrize("name", list(BUILDS))
def test_card_command_rebuilds_the_variant_bit_for_bit(name, tmp_path):
    if name.startswith("gptq"):
        pytest.importorskip("gptqmodel", reason="install kick-hub[gptq]")
    first = tmp_path / "first"
    assert main(["compress", "--model", "world", *BUILDS[name], "--output", str(first)]) == 0
    text = card.variant_card(first, "test-org/world-variant").text
    commands = [line for line in text.splitlines() if line.startswith("kick compress ")]
    assert len(commands) == 1
    argv = shlex.split(commands[0])
    assert argv[-2:] == ["--output", "DIR"]
    args, spec = parse(argv)
    manifest = load_manifest(first)
    assert spec.to_dict() == manifest["spec"]
    if manifest["calibration"]:
        c = manifest["calibration"]
        assert (args.calibration, args.nsamples, args.seqlen, spec.seed) == (c["source"], c["nsamples"],
                                                                           c["seqlen"], c["seed"])
    second = tmp_path / "second"
    assert main(argv[1:-1] + [str(second)]) == 0
    again = load_manifest(second)
    assert again["spec"] == manifest["spec"] and again["calibration"] == manifest["calibration"]
    assert again["storage"] == manifest["storage"]
    hashes = tensor_hashes(first)
    assert hashes and tensor_hashes(second) == hashes
