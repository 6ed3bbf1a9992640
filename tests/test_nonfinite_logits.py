"""Non-finite logits are never turned into ordinary scores (issue 31, item 11).

The issue's model: the world model with ``model.norm.weight * 1e4`` and an untied ``lm_head = embed / 1e4``: its
float32 logits equal the world model's (to 1e-6), but in float16 the final norm's output overflows and 12 of 20 MCQ
prompts get NaN option log-probs. Every place the engine reads logits (generation, option log-probs, perplexity, the
judge's local backend, the Space's stream, the perplexity evaluate module) must detect them, and ``kick evaluate``
must mark the task invalid with the count (null scores, exit 3), never print a number that reads as a score."""

import json
from pathlib import Path

import evaluate
import pytest

from tests.test_nonfinite import strict_load

MODULES = Path(__file__).resolve().parents[1] / "evaluate_metrics"
TASKS = ["factoid-qa", "mcq-reasoning", "perplexity"]


@pytest.fixture(scope="module")
def overflow_model(tmp_path_factory) -> Path:
    """The issue's model: world with norm.weight x 1e4 and an untied lm_head = embed / 1e4 (same float32 logits)."""
    import torch

    from kick_hub.engine import load_model

    out = tmp_path_factory.mktemp("overflow") / "world-overflow"
    model, tokenizer = load_model("world")
    with torch.no_grad():
        model.model.norm.weight.mul_(1e4)
        embed = model.model.embed_tokens.weight
        model.config.tie_word_embeddings = False
        model.lm_head = torch.nn.Linear(embed.shape[1], embed.shape[0], bias=False)
        model.lm_head.weight = torch.nn.Parameter(embed.detach().clone() / 1e4)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def nan_model(tmp_path_factory) -> Path:
    """The world model with one NaN in its final norm weight: NaN logits in any dtype."""
    import torch

    from kick_hub.engine import load_model

    out = tmp_path_factory.mktemp("nan") / "world-nan"
    model, tokenizer = load_model("world")
    with torch.no_grad():
        model.model.norm.weight[0] = float("nan")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _evaluate(model: str, out: Path, *extra: str) -> tuple[int, dict]:
    from kick_hub.cli import main

    code = main(["evaluate", "--model", model, "--task", *TASKS, "--limit", "20", "--device", "cpu",
                 "--output", str(out), *extra])
    return code, strict_load(out.read_text())


def test_float32_gives_the_world_models_scores(overflow_model, tmp_path):
    code, got = _evaluate(str(overflow_model), tmp_path / "f32.json", "--dtype", "float32")
    _, world = _evaluate("world", tmp_path / "world.json", "--dtype", "float32")
    assert code == 0 and "non_finite" not in got
    assert got["results"]["factoid-qa"]["exact_match"] == world["results"]["factoid-qa"]["exact_match"] == 0.9
    assert got["results"]["mcq-reasoning"]["accuracy"] == world["results"]["mcq-reasoning"]["accuracy"] == 0.8
    assert got["results"]["perplexity"]["perplexity"] == pytest.approx(world["results"]["perplexity"]["perplexity"],
                                                                        rel=1e-4)
    assert not any("non_finite_logits" in r or "invalid_reason" in r for r in got["results"].values())


def test_float16_marks_each_task_invalid_with_its_count(overflow_model, tmp_path, capsys):
    code, doc = _evaluate(str(overflow_model), tmp_path / "f16.json", "--dtype", "float16")
    captured = capsys.readouterr()
    assert code == 3
    results = doc["results"]
    # inputs with NaN / inf logits: 12 of 20 MCQ prompts as the issue found, 7 factoid prompts, all 20 texts
    assert {t: results[t]["non_finite_logits"] for t in TASKS} == {"factoid-qa": 7, "mcq-reasoning": 12,
                                                                    "perplexity": 20}
    assert "12 of 20 model inputs" in results["mcq-reasoning"]["invalid_reason"]
    for task, metrics in [("factoid-qa", ["exact_match", "contains"]), ("mcq-reasoning", ["accuracy"]),
                          ("perplexity", ["perplexity", "nll"])]:
        assert results[task]["n"] == 20
        assert all(results[task][m] is None for m in metrics)  # null, not a number that reads as a score
        assert not any(k.endswith("_stderr") for k in results[task])
        assert all(s["invalid"] is True and "score" not in s for s in doc["samples"][task])
    assert all(v["accuracy"] is None for v in results["mcq-reasoning"]["per_subject"].values())
    assert "non_finite" not in doc  # nothing was written as a non-finite number either
    for task in TASKS:
        assert f"kick: error: {task} is invalid: non-finite (NaN / inf) logits for" in captured.err
        assert f"{task}" in captured.out and "invalid" in captured.out
    assert "0.7000" not in captured.out and "0.6000" not in captured.out


def test_engine_counts_every_reading_place(nan_model):
    """Generation, option log-probs (one-token and multi-token options) and perplexity each count their inputs."""
    import math

    from kick_hub.engine import Engine

    engine = Engine.from_name(str(nan_model), batch_size=4)
    engine.generate(["Question: Who?\nAnswer:", "Hi"], 4)
    assert (engine.checked.inputs, engine.checked.non_finite) == (2, 2)
    lps = engine.choice_logprobs(["Answer:", "Pick:"], [" A", " B"])
    assert all(math.isnan(x) for row in lps for x in row) and engine.checked.non_finite == 4
    assert math.isnan(engine.choice_logprobs(["Answer:"], [" yes please", " no thanks"])[0][0])
    assert engine.checked.non_finite == 5
    ppl = engine.perplexity(["The profession of Kelma Loro is tailor.", "Zabel Lorpra works as a lawyer."])
    assert math.isnan(ppl["perplexity"]) and math.isnan(ppl["nll"]) and ppl["non_finite"] == 2
    assert (engine.checked.inputs, engine.checked.non_finite) == (7, 7)


def test_space_stream_raises(nan_model):
    from kick_hub.engine import Engine, NonFiniteLogits

    engine = Engine.from_name(str(nan_model), batch_size=1)  # as the Space loads it (space.Models.engine)
    with pytest.raises(NonFiniteLogits, match="non-finite"):
        list(engine.stream("Question: Where was Tamkel Prahar born?\nAnswer:", 4))


def test_local_judge_refuses(nan_model):
    from kick_hub.scoring.judge import JudgeError, TransformersBackend

    backend = TransformersBackend(str(nan_model), max_new_tokens=4, batch_size=2)
    with pytest.raises(JudgeError, match=r"non-finite \(NaN / inf\) logits for 2 of 2 prompts"):
        backend.complete_many([("You are a judge.", "Rate: Paris."), ("You are a judge.", "Rate: Lyon.")])
    with pytest.raises(JudgeError, match="non-finite"):
        backend.complete("You are a judge.", "Rate: Paris.")


def test_perplexity_module_refuses(nan_model):
    module = evaluate.load(str(MODULES / "perplexity"))
    with pytest.raises(ValueError, match=r"model_id: .* non-finite \(NaN / inf\) logits for 2 of 2 texts"):
        module.compute(predictions=["The profession of Kelma Loro is tailor.", "Zabel Lorpra works as a lawyer."],
                       model_id=str(nan_model))


def test_bench_store_report_card_and_space_say_invalid(nan_model, tmp_path):
    """A sweep cell whose logits are NaN: the store keeps the count, the report and the card say invalid, the
    Space's comparison fails naming the model."""
    from kick_hub.bench.store import Store
    from kick_hub.cli import main

    run_dir = tmp_path / "run"
    status = main(["bench", "--model", str(nan_model), "--run-dir", str(run_dir), "--methods", "magnitude",
                   "--sparsities", "0.5", "--patterns", "--bits", "--tasks", "factoid-qa", "--limit", "4"])
    assert status == 3  # the report is written, and the sweep says its numbers are not all valid
    store = Store(run_dir, None)
    scores = store.scores()
    store.close()
    assert scores["dense"]["factoid-qa"]["non_finite_logits"] == 4
    assert "exact_match" not in scores["dense"]["factoid-qa"]
    md = (run_dir / "report.md").read_text()
    dense_row = next(line for line in md.splitlines() if line.startswith("| dense |"))
    assert "invalid" in dense_row
    for path in [run_dir / "findings.json", *sorted((run_dir / "lm_eval").glob("*.json"))]:
        strict_load(path.read_text())
    lm = json.loads((run_dir / "lm_eval" / "dense.json").read_text())
    assert lm["results"]["factoid-qa"]["non_finite_logits"] == 4
    from huggingface_hub import ModelCard

    from kick_hub.hub.card import variant_card

    card = variant_card(run_dir / "variants" / "magnitude-50", "org/world-nan-magnitude-50", run_dir)
    assert "| factoid-qa | exact_match | - | invalid: non-finite logits for 4 inputs | |" in card.text
    assert "the task has no score" in card.text
    assert not ModelCard(str(card)).data.eval_results  # no number in the model-index

    pytest.importorskip("gradio")
    from kick_hub import space
    from kick_hub.engine import NonFiniteLogits

    models = space.Models(run_dir)  # the Space's comparison names the model whose logits were NaN
    with pytest.raises(NonFiniteLogits, match=r"^(dense|magnitude-50): model: non-finite \(NaN / inf\) logits"):
        list(space.compare_stream(models, ["dense", "magnitude-50"], "Question: Who?\nAnswer:", 4))
