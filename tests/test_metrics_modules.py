"""The evaluate modules: loadable from the checkout, same numbers as the library, clear errors, self-contained."""

import json
import math
import re
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


# A stand-alone call per module and the value it must give (perplexity: a real model, by path).
STANDALONE = {
    "factoid_qa": ("predictions=['Paris.', 'Lyon'], references=[['Paris'], ['Nice']]", {"exact_match": 0.5}),
    "icra_qa": ("predictions=['the Beatles'], references=[['Beatles']]", {"exact_match": 1.0}),
    "mcq_reasoning": ("predictions=['A', 'B'], references=['A', 'C']", {"accuracy": 0.5}),
    "icsum": ("predictions=['a cat sat'], references=['a cat sat']", {"rougeL": 1.0}),
    "instruction_following": ("predictions=['a a b', 'c'], references=['a', 'c']", {"distinct_1": 0.75}),
    "perplexity": ("predictions=['Once upon a time, there was a little girl named Lily.'], model_id=MODEL", None),
}

# Run in the child before anything else: importing kick_hub (or any submodule) fails, as without kick-hub installed.
BLOCKER = """
import sys
class _NoKickHub:
    def find_spec(self, name, path=None, target=None):
        if name == "kick_hub" or name.startswith("kick_hub."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: kick-hub is not installed)")
sys.meta_path.insert(0, _NoKickHub())
for _m in [m for m in sys.modules if m == "kick_hub" or m.startswith("kick_hub.")]:
    del sys.modules[_m]
try:
    import kick_hub  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("the kick_hub blocker failed")
"""


def standalone_model() -> Path:
    """stories260K from ../shared when present, else the shipped world model (by path: no alias without kick_hub)."""
    shared = ROOT.parent / "shared" / "models" / "stories260K"
    return shared if (shared / "config.json").exists() else ROOT / "kick_hub" / "world" / "model"


def test_modules_folder_is_the_package_data():
    """``evaluate_metrics/`` at the repository root is the path people know; the folders live in the package (so
    ``kick publish-tasks`` finds them in an installed wheel)."""
    from kick_hub.hub.tasks import MODULES_DIR

    assert MODULES.resolve() == MODULES_DIR.resolve() == ROOT / "kick_hub" / "evaluate_metrics"
    assert sorted(f.name for f in MODULES_DIR.iterdir() if (f / f"{f.name}.py").is_file()) == sorted(FOLDERS)


@pytest.mark.parametrize("folder", FOLDERS)
def test_module_works_without_kick_hub(folder, tmp_path):
    """A published module must work with only its requirements.txt: copy it (symlinks resolved) out of the checkout
    and compute with it in a fresh interpreter where importing kick_hub fails."""
    dest = tmp_path / folder
    shutil.copytree(MODULES / folder, dest, symlinks=False, ignore=shutil.ignore_patterns("__pycache__"))
    assert not any(p.is_symlink() for p in dest.iterdir())
    assert not re.search(r"^\s*(from|import)\s+kick_hub", "".join(p.read_text() for p in dest.glob("*.py")), re.M)
    call, expected = STANDALONE[folder]
    code = BLOCKER + (
        "import json, evaluate\n"
        f"MODEL = {str(standalone_model())!r}\n"
        f"m = evaluate.load({str(dest)!r})\n"
        f"print(json.dumps(m.compute({call})))\n"
        "assert not [n for n in sys.modules if n.startswith('kick_hub')]\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    if expected is not None:
        assert {k: got[k] for k in expected} == pytest.approx(expected)
        return
    assert got["tokens"] > 5 and 1.0 < got["perplexity"] < math.inf
    from kick_hub.engine import Engine

    lib = Engine.from_name(str(standalone_model())).perplexity(["Once upon a time, there was a little girl named Lily."])
    assert got["perplexity"] == pytest.approx(lib["perplexity"], rel=1e-5)
    assert got["tokens"] == lib["tokens"]
