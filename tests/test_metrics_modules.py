"""The evaluate modules: loadable from the checkout, same numbers as the library, clear errors, self-contained."""

import shutil
import subprocess
import sys
from pathlib import Path

import evaluate
import pytest

from kick_hub.scoring import mcq, qa, text

ROOT = Path(__file__).resolve().parents[1]
MODULES = ROOT / "evaluate_metrics"
FOLDERS = ["factoid_qa", "mcq_reasoning", "icra_qa", "icsum", "instruction_following", "perplexity"]


def load(folder):
    return evaluate.load(str(MODULES / folder))


@pytest.mark.parametrize("folder", FOLDERS)
def test_layout_follows_evaluate(folder):
    d = MODULES / folder
    for name in (f"{folder}.py", "README.md", "app.py", "requirements.txt"):
        assert (d / name).is_file(), name
    card = (d / "README.md").read_text()
    header = card.split("---")[1]
    for key in ("title:", "sdk: gradio", "app_file: app.py", "tags:"):
        assert key in header
    for section in ("## Scoring rules", "## Limitations and bias", "## Citation", "### Inputs", "### Output values"):
        assert section in card
    assert "launch_gradio_widget" in (d / "app.py").read_text()


def test_factoid_module_matches_library():
    preds = ["Paris.", "it was Lyon", ""]
    refs = [["Paris", "Paris, France"], ["Lyon"], ["Nice"]]
    got = load("factoid_qa").compute(predictions=preds, references=refs)
    lib = qa.score_factoid(preds, refs)
    assert got == {"exact_match": lib["exact_match"], "contains": lib["contains"]}
    assert got["exact_match"] == pytest.approx(1 / 3) and got["contains"] == pytest.approx(2 / 3)
    kick = load("factoid_qa").compute(predictions=["Q: capital? The answer is paris"], references=[["Paris"]],
                                      protocol="llm-kick")
    assert kick == {"exact_match": 1.0}


def test_icra_module_matches_library():
    preds, refs = ["new york city", "the Beatles"], [["New York"], ["Beatles"]]
    got = load("icra_qa").compute(predictions=preds, references=refs)
    assert got == {k: v for k, v in qa.score_icra(preds, refs).items() if k != "per_example"}
    assert got["exact_match"] == 0.5


def test_mcq_module_tables():
    got = load("mcq_reasoning").compute(predictions=["A", "B", "C"], references=["A", "C", "C"],
                                        subjects=["anatomy", "virology", "college_physics"])
    assert got["accuracy"] == pytest.approx(2 / 3)
    assert got["per_category"] == {"STEM": {"accuracy": 1.0, "n": 1}, "other": {"accuracy": 0.5, "n": 2}}


def test_text_modules():
    got = load("icsum").compute(predictions=["a cat sat", "dogs run"], references=["a cat sat", "the cat"],
                                buckets=["small", "large"])
    assert got["per_bucket"]["small"]["rougeL"] == pytest.approx(1.0)
    assert got["per_bucket"]["large"]["rougeL"] == 0.0
    assert got["rougeL"] == pytest.approx(text.rouge(["a cat sat", "dogs run"], ["a cat sat", "the cat"])["rougeL"])
    got = load("instruction_following").compute(predictions=["a a b", "c"], references=["a", "c"])
    assert got["distinct_1"] == pytest.approx(3 / 4)


def test_perplexity_module_on_real_model(stories260k):
    from kick_hub.engine import Engine

    texts = ["Once upon a time, there was a little girl named Lily.", "She loved to play outside in the park."]
    got = load("perplexity").compute(predictions=texts, model_id=str(stories260k))
    lib = Engine.from_name(str(stories260k)).perplexity(texts)
    assert got["perplexity"] == pytest.approx(lib["perplexity"], rel=1e-5)
    assert 1.0 < got["perplexity"] < 50.0  # a trained model on in-domain text


@pytest.mark.parametrize("folder, kwargs, field", [
    ("factoid_qa", {"predictions": ["a", "b"], "references": [["a"]]}, "predictions"),
    ("factoid_qa", {"predictions": ["a"], "references": [["a"]], "protocol": "exact"}, "protocol"),
    ("mcq_reasoning", {"predictions": ["A"], "references": ["E"]}, "references"),
    ("icra_qa", {"predictions": [], "references": []}, "predictions"),
    ("perplexity", {"predictions": ["x"]}, "model_id"),
])
def test_bad_input_raises_value_error(folder, kwargs, field):
    with pytest.raises(ValueError, match=field):
        load(folder).compute(**kwargs)


@pytest.mark.parametrize("folder", ["factoid_qa", "mcq_reasoning", "icra_qa", "icsum", "instruction_following"])
def test_module_works_without_kick_hub(folder, tmp_path):
    """A published module must work with only its requirements.txt: copy it (symlinks resolved) out of the checkout
    and load it in a fresh interpreter where importing kick_hub fails."""
    dest = tmp_path / folder
    shutil.copytree(MODULES / folder, dest, symlinks=False)
    code = (
        "import sys; sys.modules['kick_hub'] = None\n"
        "import evaluate\n"
        f"m = evaluate.load({str(dest)!r})\n"
        "print(m.description[:20])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
