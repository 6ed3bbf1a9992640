"""How sure each number is (kick_hub.scoring.stats): standard errors, paired tests against dense, findings that
respect noise, MCQ under both protocols, and n < 2 giving a value without an interval. Values are hand-computed."""

import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest

from kick_hub.bench import analysis, report, sweep
from kick_hub.bench.plan import plan
from kick_hub.bench.store import Store, StoreError
from kick_hub.scoring import stats
from tests.kick_runner import kick


def test_binomial_stderr_of_a_known_vector():
    x = [1, 1, 0, 1, 0, 1, 1, 1, 1, 0]  # p = 0.7, n = 10: sqrt(0.7 * 0.3 / 9) = 0.15275252316519466
    assert stats.mean_stderr(x) == pytest.approx(0.15275252316519466, abs=1e-15)
    lm_metrics = pytest.importorskip("lm_eval.api.metrics")
    assert stats.mean_stderr(x) == pytest.approx(lm_metrics.mean_stderr(x), abs=1e-15)  # lm-eval's formula
    e = stats.estimate(stats.Series(list(range(10)), np.array(x, dtype=float)))
    assert (e.value, e.method, e.n) == (0.7, "binomial", 10) and e.stderr == pytest.approx(0.15275252316519466)


def test_perplexity_stderr_by_the_delta_method():
    # nll = [2, 4] nats over 1 token each: R = 3, se(R)^2 = 2/1 * ((2-3)^2 + (4-3)^2) / 2^2 = 1, se = e^3 * 1
    assert stats.perplexity_stderr([2.0, 4.0], [1, 1]) == pytest.approx(math.exp(3), rel=1e-12)
    assert stats.nll_stderr([2.0, 4.0], [1, 1]) == (3.0, 1.0)
    # weighted: nll [3, 3] over [1, 2] tokens: R = 2, residuals 1 and -1: se(R) = sqrt(2 * 2) / 3
    assert stats.nll_stderr([3.0, 3.0], [1, 2]) == pytest.approx((2.0, 2 / 3))


def test_bootstrap_stderr_is_near_the_plug_in_one():
    x = np.linspace(0, 1, 50) ** 2
    plug_in = np.std(x, ddof=0) / math.sqrt(len(x))  # the bootstrap estimates the 1/n-variance form
    assert stats.bootstrap_stderr(x) == pytest.approx(plug_in, rel=0.05)
    assert stats.bootstrap_stderr(x) == stats.bootstrap_stderr(x)  # fixed seed


@pytest.mark.parametrize("b, c, p", [(1, 9, 0.021484375), (9, 1, 0.021484375), (0, 0, 1.0), (3, 3, 1.0),
                                     (0, 5, 0.0625)])
def test_mcnemar_exact(b, c, p):
    # b=1, c=9: 2 * (C(10,0) + C(10,1)) / 2^10 = 22 / 1024; b=0, c=5: 2 / 32
    assert stats.mcnemar_exact(b, c) == pytest.approx(p, abs=1e-15)


def test_mcnemar_refuses_negative_counts():
    with pytest.raises(ValueError, match="b, c: discordant counts must be >= 0"):
        stats.mcnemar_exact(-1, 2)


def _binary(values, ids=None):
    return stats.Series(ids or list(range(len(values))), np.array(values, dtype=float))


def test_paired_interval_excludes_zero_for_a_clear_difference_and_holds_it_for_identical_predictions():
    dense = _binary([1] * 85 + [0] * 15)
    worse = _binary([1] * 60 + [0] * 40)  # 25 questions lost, none gained
    p = stats.paired(dense, worse, key="factoid-qa")
    assert p.n == 100 and p.diff == pytest.approx(-0.25) and p.high < 0 and p.significant
    assert (p.b, p.c) == (25, 0) and p.p_mcnemar == pytest.approx(2 / 2 ** 25)
    assert p.rel == pytest.approx(0.6 / 0.85) and p.rel_high < 1
    same = stats.paired(dense, dense, key="factoid-qa")
    assert (same.diff, same.low, same.high, same.significant) == (0.0, 0.0, 0.0, False)
    assert (same.b, same.c, same.p_mcnemar) == (0, 0, 1.0)


def test_paired_matches_examples_by_id():
    dense = _binary([1, 0, 1], ids=["a", "b", "c"])
    variant = _binary([0, 1], ids=["c", "b"])  # "a" not scored by the variant
    p = stats.paired(dense, variant, key="t")
    assert p.ids == ["b", "c"] and p.n == 2 and (p.dense, p.variant) == (0.5, 0.5) and (p.b, p.c) == (1, 1)


_SCRIPT = """
import json, numpy as np
from kick_hub.scoring import stats
d = stats.Series(list(range(40)), np.array([1.0] * 30 + [0.0] * 10))
v = stats.Series(list(range(40)), np.array([1.0] * 24 + [0.0] * 12 + [1.0] * 4))
p = stats.paired(d, v, key="mcq-reasoning")
print(json.dumps([p.low, p.high, p.rel_low, p.rel_high, stats.bootstrap_stderr(np.linspace(0, 1, 40) ** 3)]))
"""


def test_intervals_are_the_same_in_every_process():
    runs = [json.loads(subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                                      check=True).stdout) for _ in range(2)]
    d = stats.Series(list(range(40)), np.array([1.0] * 30 + [0.0] * 10))
    v = stats.Series(list(range(40)), np.array([1.0] * 24 + [0.0] * 12 + [1.0] * 4))
    p = stats.paired(d, v, key="mcq-reasoning")
    here = [p.low, p.high, p.rel_low, p.rel_high, stats.bootstrap_stderr(np.linspace(0, 1, 40) ** 3)]
    assert runs[0] == runs[1] == here


def test_fewer_than_two_examples_give_the_value_and_a_reason():
    e = stats.estimate(_binary([1]))
    assert (e.value, e.stderr, e.reason) == (1.0, None, "n = 1: an interval needs at least 2 examples")
    p = stats.paired(_binary([1]), _binary([0]), key="t")
    assert (p.diff, p.low, p.significant, p.reason) == (-1.0, None, False,
                                                        "n = 1: an interval needs at least 2 examples")
    assert stats.task_stderrs("factoid-qa", {"n": 1, "exact_match": 1.0},
                              [{"id": 0, "score": 1.0}]) == {}  # no key rather than NaN
    with pytest.raises(stats.TooFewExamples, match="n = 1"):
        stats.mean_stderr([1.0])


def test_examples_needed():
    # se 0.05 at n = 100, effect 0.1: n (1.959964 + 0.841621)^2 (0.05 / 0.1)^2 = 100 * 7.8489 / 4 -> 197
    assert stats.examples_needed(0.1, 0.05, 100) == 197
    assert stats.examples_needed(0.0, 0.05, 100) is None


# ----------------------------------------------------------------- synthetic stores through the real Store API
def _write(store, label, spec, factoid, ppl_nll, run_id):
    """One cell: factoid-qa 0/1 scores (list) and perplexity texts' summed NLL (1 token each)."""
    n = len(factoid)
    samples = {"factoid-qa": [{"id": f"q{i}", "prompt": "q", "output": "a", "reference": ["a"], "score": float(s)}
                              for i, s in enumerate(factoid)],
               "perplexity": [{"id": f"t{i}", "prompt": "t", "output": "", "reference": "", "score": math.exp(a),
                               "nll": a, "tokens": 1} for i, a in enumerate(ppl_nll)]}
    results = {"factoid-qa": {"n": n, "exact_match": sum(factoid) / n},
               "perplexity": {"n": len(ppl_nll), "perplexity": math.exp(sum(ppl_nll) / len(ppl_nll))}}
    for task, scores in results.items():
        scores.update(stats.task_stderrs(task, scores, samples[task]))
    store.write_cell(label, spec["method"] if spec else "dense", spec, None, None, results, samples, run_id, 1.0)


def _spec(s):
    return {"method": "wanda", "sparsity": s, "pattern": None, "bits": None}


def test_a_drop_within_noise_is_inconclusive(tmp_path):
    store = Store(tmp_path, "world")
    run = store.start_run(["test"])
    nll = [1.0, 1.2, 0.8, 1.1, 0.9, 1.0]
    _write(store, "dense", None, [1] * 17 + [0] * 3, nll, run)
    _write(store, "wanda-30", _spec(0.3), [1] * 16 + [0] * 4, nll, run)  # -5.9 %: past the 5 % line
    _write(store, "wanda-50", _spec(0.5), [1] * 15 + [0] * 5, [a + 0.01 for a in nll], run)
    report.write(store, tmp_path)
    rows, _ = analysis.table_data(store)
    store.close()
    w30 = next(r for r in rows if r["label"] == "wanda-30")
    assert w30["se"]["factoid-qa"] == pytest.approx(math.sqrt(0.8 * 0.2 / 19))  # stored exact_match_stderr
    assert w30["rel"]["factoid-qa"] < 1 - analysis.LOSS  # the 5 % rule alone would call it a loss
    assert not w30["paired"]["factoid-qa"].significant and w30["paired"]["factoid-qa"].b == 1
    facts = json.loads((tmp_path / "findings.json").read_text())
    first = facts["findings"][0]
    assert first["verdict"] == "inconclusive (within noise at n = 20)" and first["n"] == 20
    assert first["examples_needed"] > 20
    assert facts["first_loss"]["factoid-qa"] == {"wanda": 0.3}
    assert facts["first_significant_loss"]["factoid-qa"] == {"wanda": None}
    assert facts["statistics"]["seed"] == stats.SEED
    md = (tmp_path / "report.md").read_text()
    assert "**inconclusive (within noise at n = 20)**: Knowledge degrades" in md
    assert f"{first['examples_needed']} examples per task would resolve it" in md
    assert "| factoid-qa | never | 30% |" in md  # significant, then the 5 % rule
    assert "| wanda-30 | 0.8 ± 0.092 (0.94) |" in md  # sqrt(0.16 / 19) = 0.0918
    lm = json.loads((tmp_path / "lm_eval" / "wanda-30.json").read_text())
    assert lm["results"]["factoid-qa"]["exact_match_stderr"] == pytest.approx(math.sqrt(0.8 * 0.2 / 19))
    assert lm["results"]["perplexity"]["perplexity_stderr"] > 0


def test_a_clear_drop_is_confirmed_significant(tmp_path):
    store = Store(tmp_path, "world")
    run = store.start_run(["test"])
    nll = [1.0, 1.2, 0.8, 1.1, 0.9, 1.0]
    _write(store, "dense", None, [1] * 90 + [0] * 10, nll, run)
    _write(store, "wanda-30", _spec(0.3), [1] * 60 + [0] * 40, [a + 0.001 for a in nll], run)
    report.write(store, tmp_path)
    store.close()
    facts = json.loads((tmp_path / "findings.json").read_text())
    assert facts["findings"][0]["verdict"] == "confirmed"
    assert facts["first_significant_loss"]["factoid-qa"] == {"wanda": 0.3}
    assert facts["paired"]["wanda-30"]["factoid-qa"]["significant"] is True
    assert facts["paired"]["wanda-30"]["factoid-qa"]["b"] == 30
    md = (tmp_path / "report.md").read_text()
    assert "| wanda-30 | 0.6 ± 0.049 (0.67*) |" in md  # sqrt(0.24 / 99) = 0.0492; * = significant


def test_one_example_gives_values_without_intervals_and_no_nan(tmp_path):
    store = Store(tmp_path, "world")
    run = store.start_run(["test"])
    _write(store, "dense", None, [1], [1.0], run)
    _write(store, "wanda-30", _spec(0.3), [0], [1.5], run)
    report.write(store, tmp_path)
    store.close()
    md, page = (tmp_path / "report.md").read_text(), (tmp_path / "report.html").read_text()
    cells = [x for x in md.splitlines() if x.startswith("| ")] + re.findall(r"<td>([^<]*)</td>", page)
    assert not [x for x in cells if "NaN" in x or "nan" in x]  # no value is NaN (notes may name NaN logits)
    assert "| dense | 1 [no interval: n = 1: an interval needs at least 2 examples] (1.00) |" in md
    assert "-1 (no interval: n = 1: an interval needs at least 2 examples)" in md
    assert "inconclusive (within noise at n = 1)" in md
    for name in ("findings.json", "lm_eval/dense.json"):
        json.loads((tmp_path / name).read_text(), parse_constant=lambda c: pytest.fail(f"{name}: {c}"))


# ----------------------------------------------------------------- real runs of the world model
def test_evaluate_json_has_stderr_keys_and_both_mcq_protocols(tmp_path):
    out = tmp_path / "r.json"
    run = kick("evaluate", "--task", "factoid-qa", "mcq-reasoning", "perplexity", "--limit", "6", "--mcq-protocols",
               "loglik", "generate", "--output", out)
    assert run.returncode == 0, run.stderr[-2000:]
    doc = json.loads(out.read_text())
    res, samples = doc["results"], doc["samples"]
    for task, metric in (("factoid-qa", "exact_match"), ("mcq-reasoning", "accuracy"),
                         ("mcq-reasoning", "accuracy_loglik"), ("mcq-reasoning", "accuracy_generate")):
        field = {"accuracy_loglik": "score_loglik", "accuracy_generate": "score_generate"}.get(metric, "score")
        x = [s[field] for s in samples[task]]
        p, n = sum(x) / len(x), len(x)
        assert res[task][metric] == pytest.approx(p)
        assert res[task][f"{metric}_stderr"] == pytest.approx(math.sqrt(p * (1 - p) / (n - 1)), abs=1e-12)
    ppl = res["perplexity"]
    assert sum(s["tokens"] for s in samples["perplexity"]) == ppl["tokens"]
    assert math.exp(sum(s["nll"] for s in samples["perplexity"]) / ppl["tokens"]) == pytest.approx(ppl["perplexity"])
    assert ppl["perplexity_stderr"] > 0 and doc["config"]["mcq_protocols"] == ["loglik", "generate"]
    assert "accuracy_generate" in run.stdout and " ± " in run.stdout


def test_bench_stores_both_protocols_and_refuses_another_set(tmp_path):
    cells = plan(["magnitude"], [0.5], [], [])
    store = sweep.run("world", tmp_path, cells, ["mcq-reasoning"], limit=8, progress=False,
                      mcq_protocols=["generate", "loglik"])
    scores = store.scores()
    report.write(store, tmp_path)
    store.close()
    mcq = scores["magnitude-50"]["mcq-reasoning"]
    assert {"accuracy", "accuracy_loglik", "accuracy_generate", "accuracy_stderr", "accuracy_loglik_stderr",
            "accuracy_generate_stderr"} <= set(mcq)
    assert mcq["accuracy"] == mcq["accuracy_loglik"]  # --protocol default is loglik
    md = (tmp_path / "report.md").read_text()
    assert "## mcq-reasoning under both protocols" in md and "also scored under loglik, generate" in md
    gap = mcq["accuracy_loglik"] - mcq["accuracy_generate"]
    line = next(x for x in md.splitlines() if x.startswith("| magnitude-50 |") and "[" in x and "±" in x)
    assert format(gap, "+.3g") in line
    with pytest.raises(StoreError, match="mcq_protocols"):
        sweep.run("world", tmp_path, cells, ["mcq-reasoning"], limit=8, progress=False)


@pytest.mark.unit
def test_bad_mcq_protocol_exits_2(tmp_path):
    out = kick("bench", "--run-dir", tmp_path / "r", "--mcq-protocols", "logprob")
    assert out.returncode == 2 and "--mcq-protocols" in out.stderr and "loglik" in out.stderr
    with pytest.raises(ValueError, match=r"mcq-protocols: each must be one of \['loglik', 'generate'\]"):
        sweep.task_settings("mcq-reasoning", 8, None, ["logprob"])
    for command, tasks in (("evaluate", "--task"), ("bench", "--tasks")):  # an option that would do nothing
        out = kick(command, tasks, "factoid-qa", "--mcq-protocols", "loglik",
                   *(["--run-dir", str(tmp_path / "r")] if command == "bench" else []))
        assert out.returncode == 2 and "mcq-protocols: applies to mcq-reasoning only" in out.stderr, out.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.unit
def test_distinct_n_bootstrap_equals_the_resampled_lists():
    """The batched distinct-n of every resample equals ``distinct_n`` on each resampled list of outputs (the
    bootstrap of a corpus statistic without recomputing it 2000 times in Python)."""
    from kick_hub.scoring.stats import DistinctN
    from kick_hub.scoring.text import distinct_n

    texts = ["the cat sat on the mat", "the cat", "", "a dog sat on a log", "the the the", "mat"]
    idx = np.random.default_rng(7).integers(0, len(texts), size=(200, len(texts)))
    for n in (1, 2, 3):
        want = np.array([distinct_n([texts[i] for i in row], n) for row in idx])
        assert np.array_equal(DistinctN(n).many(texts, idx), want)
    assert DistinctN(2).many(["", "one"], np.array([[0, 1], [1, 1]])).tolist() == [0.0, 0.0]  # no bigram: 0
