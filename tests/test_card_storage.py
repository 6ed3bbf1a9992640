"""How a variant stores its weights, said as it is: the card's storage rows (effective bits per weight, tensor dtypes
with counts and bytes, bytes on disk) measured on real variants of the world model (GPTQ 4-bit, torchao int8,
bitsandbytes NF4, magnitude pruning), "achieved sparsity" for pruned variants only; the quantizer's library
versions in the manifest, on the card and in the load instructions; and the Space's requirements pinned to them
(a real ``kick publish-space`` against the loopback Hub)."""

import importlib.metadata as md
import json
import re

import pytest
from safetensors import safe_open

from kick_hub.compress import CompressSpec, make_variant
from kick_hub.hub.card import variant_card
from kick_hub.hub.space_repo import kernel_requirements
from kick_hub.io import format_size
from kick_hub.variant import CALIBRATION_FILE, load_manifest

METHODS = {"gptq": ("optimum", "gptqmodel"), "int8": ("torchao",), "nf4": ("bitsandbytes",), "magnitude": ()}


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    """method -> a real variant directory of the world model (GPTQ calibrated on 16 x 128 world tokens)."""
    for libraries in METHODS.values():
        for name in libraries:
            pytest.importorskip(name.replace("-", "_"))
    root = tmp_path_factory.mktemp("variants")
    specs = {"gptq": CompressSpec("gptq", bits=4), "int8": CompressSpec("int8"), "nf4": CompressSpec("nf4"),
             "magnitude": CompressSpec("magnitude", sparsity=0.5)}
    return {m: make_variant("world", spec, root / m, nsamples=16, seqlen=128, progress=False)
            for m, spec in specs.items()}


def world_parameters() -> int:
    from kick_hub.engine import load_model

    model, _ = load_model("world")
    return sum(p.numel() for p in model.parameters())


def saved_tensors(directory) -> dict[str, tuple[int, int]]:
    """torch dtype name -> (tensor count, bytes), by loading every tensor of the weight files."""
    out: dict[str, tuple[int, int]] = {}
    for f in sorted(directory.glob("*.safetensors")):
        if f.name == CALIBRATION_FILE:
            continue
        with safe_open(str(f), "pt") as fh:
            for key in fh.keys():
                t = fh.get_tensor(key)
                name = str(t.dtype).removeprefix("torch.")
                count, size = out.get(name, (0, 0))
                out[name] = (count + 1, size + t.numel() * t.element_size())
    return out


def compression_rows(card_text: str) -> dict[str, str]:
    section = card_text.split("## Compression")[1].split("\n## ")[0]
    return {m[1].strip(): m[2].strip() for m in re.finditer(r"^\| ([^|]+) \| (.+) \|$", section, re.M)}


@pytest.mark.parametrize("method", list(METHODS))
def test_manifest_records_the_quantizer_versions_and_parameters(variants, method):
    manifest = load_manifest(variants[method])
    expected = {name: md.version(name) for name in METHODS[method]}
    assert manifest["quantizer_versions"] == expected
    assert expected.items() <= manifest["versions"].items()
    assert manifest["parameters"] == world_parameters() == 3672320


@pytest.mark.parametrize("method, dtypes", [
    ("gptq", {"int32", "float16"}),  # packed 4-bit weights, zero points, g_idx + float16 scales and the rest
    ("int8", {"int8", "float32"}),
    ("nf4", {"uint8", "float32"}),  # 4-bit codes two to a byte + float32 absmax and the rest
    ("magnitude", {"float32"}),
])
def test_card_describes_the_storage_as_saved(variants, method, dtypes):
    directory = variants[method]
    manifest = load_manifest(directory)
    rows = compression_rows(variant_card(directory, f"test-org/world-{method}").text)
    tensors = saved_tensors(directory)
    assert set(tensors) == dtypes
    total = sum(size for _, size in tensors.values())
    bits = total * 8 / 3672320
    assert rows["storage"].startswith(f"{bits:.2f} bits per weight: ")
    assert rows["storage"].endswith(" of tensors for 3,672,320 parameters")
    for name, (count, _) in tensors.items():
        assert f"{name}: {count} tensors, " in rows["tensor dtypes"]
    on_disk = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
    assert rows["size on disk"].startswith(format_size(on_disk))
    assert "weights in" not in rows["device / dtype"]
    if method == "magnitude":
        assert bits == 32
        assert rows["achieved sparsity (decoder Linear layers)"] == f"{manifest['sparsity']:.2%}" == "50.00%"
        assert "quantizer libraries" not in rows
    else:
        assert not any("sparsity" in key for key in rows), rows
        assert bits < {"gptq": 7, "int8": 12, "nf4": 9}[method]  # far below float32's 32
        versions = ", ".join(f"{n} {md.version(n)}" for n in METHODS[method])
        assert rows["quantizer libraries"] == versions
        assert all(f"{n} {md.version(n)}" in rows["libraries"] for n in METHODS[method])


@pytest.mark.parametrize("method", ["gptq", "int8", "nf4"])
def test_card_pins_the_kernels_to_the_recorded_versions(variants, method):
    text = variant_card(variants[method], f"test-org/world-{method}").text
    pins = " ".join(f"{n}=={md.version(n)}" for n in METHODS[method])
    assert f"\npip install {pins}  # the {method} kernels, at the versions that wrote the weights\n" in text
    assert "does not record the version" not in text


def test_card_of_a_manifest_without_quantizer_versions_says_so(variants, tmp_path):
    import shutil

    old = tmp_path / "nf4"
    shutil.copytree(variants["nf4"], old)
    manifest = json.loads((old / "kick_manifest.json").read_text())
    del manifest["quantizer_versions"], manifest["versions"]["bitsandbytes"], manifest["parameters"]
    (old / "kick_manifest.json").write_text(json.dumps(manifest))
    text = variant_card(old, "test-org/world-nf4").text
    rows = compression_rows(text)
    assert rows["quantizer libraries"] == "bitsandbytes (version not recorded)"
    assert "\npip install bitsandbytes  # the nf4 kernels\n" in text
    assert "does not record the version of bitsandbytes, which wrote the weights" in text
    assert "3,672,320 parameters" in rows["storage"]  # counted on the config's model when not recorded


def test_space_requirements_pin_each_allowed_variants_kernels(variants):
    manifests = {f"org/{m}": load_manifest(d) for m, d in variants.items()}
    assert kernel_requirements(manifests) == sorted(f"{n}=={md.version(n)}" for m in METHODS for n in METHODS[m])
    assert kernel_requirements({"org/plain": {}, "org/missing": None}) == []
    other = {**load_manifest(variants["nf4"]), "quantizer_versions": {"bitsandbytes": "0.1.0"}}
    with pytest.raises(ValueError, match=r"allow: org/nf4 needs bitsandbytes==\S+ but org/old needs "
                                         r"bitsandbytes==0\.1\.0"):
        kernel_requirements({"org/nf4": load_manifest(variants["nf4"]), "org/old": other})


def test_publish_space_requirements_hold_the_allowed_models_kernels(variants, hub):
    from tests.kick_runner import hub_kick

    hub_kick(hub, "push", str(variants["nf4"]), "--repo-id", "test-org/world-nf4")
    hub_kick(hub, "push", str(variants["int8"]), "--repo-id", "test-org/world-int8")
    hub.create_repo("other/plain-gptq")  # a GPTQ model kick-hub did not make: its config says what it needs
    hub.commit_files("other/plain-gptq", {"config.json": json.dumps(
        {"model_type": "llama", "quantization_config": {"quant_method": "gptq", "bits": 4}}).encode()})
    out = hub_kick(hub, "publish-space", "test-org/kick-compare", "--allow", "test-org/world-nf4",
                   "test-org/world-int8", "other/plain-gptq", "other/not-there")
    lines = hub.files("test-org/kick-compare", "space")["requirements.txt"].decode().splitlines()
    kernels = [f"bitsandbytes=={md.version('bitsandbytes')}", "gptqmodel", "optimum",
               f"torchao=={md.version('torchao')}"]
    assert lines[-4:] == kernels
    assert "torch>=2.4" in lines  # kick-hub's own requirements stay first
    assert f"requirements for the allowed models: {' '.join(kernels)}" in out.stdout
    assert "not found on the Hub, so what they need to load is not in requirements.txt: other/not-there" in out.stdout


def test_compress_prints_bits_per_weight_for_a_quantized_variant(tmp_path):
    from tests.kick_runner import kick

    pytest.importorskip("torchao")
    out = kick("compress", "--model", "world", "--method", "int8", "--output", tmp_path / "int8")
    assert out.returncode == 0, out.stderr[-2000:]
    line = out.stdout.strip().splitlines()[-1]
    assert re.fullmatch(rf"wrote {re.escape(str(tmp_path / 'int8'))}: int8, 1\d\.\d\d bits per weight, .* s, "
                        r"peak RSS \d+ MB", line), line
    assert "sparsity" not in line
