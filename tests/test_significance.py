"""A change is significant only when a test of the right size rejects at 5 %, and the interval printed is the
inversion of that same test (kick_hub.scoring.stats.paired; docs/statistics.md): McNemar's exact test with the
Clopper-Pearson interval for 0/1 metrics, the paired sign-flip test for graded scores and perplexity. The issue's
inputs (all of dense right, b examples lost and none gained) are not significant; under no true difference the
false-positive rate is at most 5 % (+ Monte Carlo noise) for n = 20, 100, 500 and 1 to 20 changed examples."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import binom

from kick_hub.bench import analysis, plots, report
from kick_hub.bench.store import Store
from kick_hub.hub import card
from kick_hub.scoring import stats
from tests.test_stats import _spec, _write

pytestmark = pytest.mark.unit  # needs no model: the fast tier (`pytest -m unit`)


def _series(values, ids=None):
    return stats.Series(ids or list(range(len(values))), np.array(values, dtype=float))


def _lost(n, b, c=0):
    """dense right on every example; the variant loses ``b`` and gains ``c`` (0/1 values)."""
    dense = [1.0] * (n - c) + [0.0] * c
    variant = [0.0] * b + [1.0] * (n - c - b) + [1.0] * c
    return _series(dense), _series(variant)


@pytest.mark.parametrize("n, b, p", [(100, 4, 0.125), (100, 5, 0.0625), (2, 2, 0.5)])
def test_the_issue_inputs_are_not_significant(n, b, p):
    x = stats.paired(*_lost(n, b), key="factoid-qa")
    assert (x.b, x.c, x.method) == (b, 0, "mcnemar") and x.p == x.p_mcnemar == pytest.approx(p, abs=1e-15)
    assert not x.significant and x.low <= 0 <= x.high and x.rel_low <= 1 <= x.rel_high
    # Clopper-Pearson of 0 successes in b: [0, 1 - 0.025^(1/b)], mapped as (b / n) (2 p - 1)
    assert x.low == pytest.approx(-b / n) and x.high == pytest.approx(b / n * (1 - 2 * 0.025 ** (1 / b)))
    assert x.to_dict()["significant"] is False and x.to_dict()["p"] == pytest.approx(p)


def test_a_clear_loss_is_significant():
    x = stats.paired(*_lost(100, 15), key="factoid-qa")
    assert x.significant and x.p == pytest.approx(2 / 2 ** 15) and x.high < 0 and x.rel_high < 1
    assert x.low == pytest.approx(-0.15) and x.high == pytest.approx(0.15 * (1 - 2 * 0.025 ** (1 / 15)))


def test_clopper_pearson_excludes_zero_exactly_when_mcnemar_rejects():
    for m in range(1, 61):
        for c in range(m + 1):
            low, high = stats.mcnemar_interval(m - c, c, m)
            assert (low > 0 or high < 0) == (stats.mcnemar_exact(m - c, c) < 0.05), (m, c)
            assert low <= (c - (m - c)) / m <= high


def test_no_discordant_pair_gives_a_zero_interval():
    x = stats.paired(_series([1, 0, 1]), _series([1, 0, 1]), key="t")
    assert (x.low, x.high, x.p, x.significant) == (0.0, 0.0, 1.0, False)
    with pytest.raises(ValueError, match="b, c, n"):
        stats.mcnemar_interval(3, 2, 4)


@pytest.mark.parametrize("n", [20, 100, 500])
def test_mcnemar_false_positive_rate_is_at_most_5_percent(n):
    """Exact: under no difference each of the m = b + c discordant examples goes either way with probability 1/2,
    so the rate of "significant" given m is the binomial sum over the c that ``paired`` calls significant."""
    for m in range(1, 21):
        rate = sum(binom.pmf(c, m, 0.5) for c in range(m + 1)
                   if stats.paired(*_lost(n, m - c, c), key="factoid-qa").significant)
        assert rate <= 0.05, (n, m, rate)


def _graded_null(rng, n, k):
    """A graded metric (ROUGE-like, in [0, 1]) where only ``k`` examples differ and dense and variant are
    exchangeable on each of them (no true difference)."""
    u = rng.random(n)
    dense, variant = u.copy(), u.copy()
    changed = rng.choice(n, size=k, replace=False)
    other = rng.random(k)
    swap = rng.random(k) < 0.5
    dense[changed] = np.where(swap, other, u[changed])
    variant[changed] = np.where(swap, u[changed], other)
    return _series(dense), _series(variant)


@pytest.mark.parametrize("n", [20, 100, 500])
def test_sign_flip_false_positive_rate_is_at_most_5_percent(n):
    rng = np.random.default_rng(n)
    hits = [[stats.paired(*_graded_null(rng, n, k), key="icsum").significant for _ in range(40)]
            for k in range(1, 21)]
    rate = np.mean(hits)  # 800 trials: sd 0.0077 at 5 %
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 800), rate
    assert not any(any(row) for row in hits[:5])  # 5 or fewer changed examples can never reach p < 0.05
    assert max(np.mean(row) for row in hits) <= 0.2


def test_perplexity_sign_flip_false_positive_rate():
    rng = np.random.default_rng(3)
    hits = []
    for n in (20, 100, 500):
        for k in range(1, 21, 2):
            for _ in range(20):
                tokens = rng.integers(5, 50, size=n).astype(float)
                nll = tokens * rng.uniform(1, 3, size=n)
                other = nll.copy()
                changed = rng.choice(n, size=k, replace=False)
                other[changed] = tokens[changed] * rng.uniform(1, 3, size=k)
                swap = rng.random(n) < 0.5
                d = stats.Series(list(range(n)), np.where(swap, other, nll), "perplexity", tokens)
                v = stats.Series(list(range(n)), np.where(swap, nll, other), "perplexity", tokens)
                p = stats.paired(d, v, key="perplexity", lower_is_better=True)
                assert p.method == "sign-flip" and (p.low <= 0 <= p.high) != p.significant
                hits.append(p.significant)
    assert np.mean(hits) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / len(hits)), np.mean(hits)


def test_graded_few_changed_examples():
    rng = np.random.default_rng(1)
    x = rng.random(100)
    for k, significant in ((4, False), (15, True)):
        y = x.copy()
        y[:k] -= 0.3
        p = stats.paired(_series(x), _series(y), key="icsum")
        assert p.method == "sign-flip" and p.significant == significant and p.low <= p.diff <= p.high
        if k == 4:  # only the 16 sign patterns of the 4 changed examples matter at 0: p = 2 / 16
            assert p.p == pytest.approx(0.125, abs=0.03) and p.high == 0.0


def test_sign_flip_verdict_interval_and_p_agree_and_match_brute_force():
    """On many random, tied and sparse differences: the interval holds the estimate, excludes 0 exactly when p <
    0.05, its bounds are where the brute-force p-value over the same sign vectors crosses 0.05."""
    rng = np.random.default_rng(7)
    for trial in range(200):
        n = int(rng.choice([3, 6, 9, 12, 30, 80]))
        kind = trial % 3
        e = (rng.normal(0.3 * rng.normal(), 1, n) if kind == 0 else
             rng.integers(-2, 3, n).astype(float) if kind == 1 else
             np.where(rng.random(n) < 0.2, rng.normal(-0.5, 0.5, n), 0.0))
        c = np.ones(n) if trial % 2 else rng.integers(1, 20, n).astype(float)
        t = stats.sign_flip(e, c, key=f"k{trial}")
        signs = stats._signs(n, f"k{trial}", stats.SEED).astype(float)

        def brute(delta):
            r = e - delta * c
            return float(np.mean(np.abs(signs @ r) >= abs(r.sum()) - 1e-9))

        assert t.p == pytest.approx(brute(0.0)) or abs(e.sum()) < 1e-9
        if t.low is None:
            assert n <= 5 and not t.p < 0.05
            continue
        assert t.low <= t.estimate <= t.high
        assert (t.low > 0 or t.high < 0) == (t.p < 0.05)
        span = max(t.high - t.low, 1e-6)
        for inside in (t.low + 1e-6 * span, t.high - 1e-6 * span):
            assert brute(inside) >= 0.05
        for outside in (t.low - 1e-3 * span, t.high + 1e-3 * span):
            assert brute(outside) < 0.05


def test_sign_flip_p_value_is_scipys_exact_permutation_test():
    from scipy.stats import permutation_test

    rng = np.random.default_rng(2)
    for n in (6, 8, 11):
        x, y = rng.random(n), rng.random(n) + 0.2
        t = stats.sign_flip(y - x)
        ref = permutation_test((y, x), lambda a, b, axis: np.mean(a - b, axis=axis), permutation_type="samples",
                               n_resamples=np.inf, alternative="two-sided", vectorized=True)
        assert t.p == pytest.approx(ref.pvalue, abs=1e-12) and t.groups == 2 ** n


def test_combined_knowledge_false_positive_rate():
    """Two 0/1 knowledge tasks with few discordant examples going either way: the mean relative score's test
    (``relative_mean``), two variants against each other (``relative_mean_difference``) and a task against another
    (``relative_difference``) stay at or below 5 %."""
    rng = np.random.default_rng(11)
    hits = {"mean": [], "variants": [], "tasks": []}
    for trial in range(300):
        pairs, others = [], []
        for t, n in (("factoid-qa", 100), ("mcq-reasoning", 60)):
            dense = (rng.random(n) < 0.8).astype(float)
            variants = []
            for _ in range(2):
                v = dense.copy()
                k = int(rng.integers(1, 21))
                idx = rng.choice(n, size=k, replace=False)
                v[idx] = rng.random(k) < 0.5
                d = dense.copy()
                swap = rng.random(n) < 0.5  # dense and variant exchangeable
                d[swap], v[swap] = v[swap], dense[swap]
                variants.append((d, v))
            pairs.append(stats.paired(_series(variants[0][0]), _series(variants[0][1]), key=t))
            # two variants against one dense: exchangeable with each other
            a, b = variants[1][1], variants[0][1].copy()
            swap = rng.random(n) < 0.5
            a, b = np.where(swap, b, a), np.where(swap, a, b)
            others.append((stats.paired(_series(variants[0][0]), _series(a), key=t),
                           stats.paired(_series(variants[0][0]), _series(b), key=t)))
        hits["mean"].append(stats.relative_mean(pairs).excludes(1.0))
        hits["variants"].append(stats.relative_mean_difference([o[0] for o in others],
                                                               [o[1] for o in others]).excludes(0.0))
        hits["tasks"].append(stats.relative_difference(pairs[0], pairs[1]).excludes(0.0))
    bound = 0.05 + 3 * math.sqrt(0.05 * 0.95 / 300)
    for name, h in hits.items():
        assert np.mean(h) <= bound, (name, np.mean(h))


def test_one_knowledge_task_keeps_its_own_verdict():
    x = stats.paired(*_lost(100, 4), key="factoid-qa")
    iv = stats.relative_mean([x])
    assert (iv.low, iv.high, iv.p, iv.method) == (x.rel_low, x.rel_high, x.p, "mcnemar") and not iv.excludes(1.0)


_SCRIPT = """
import json, numpy as np
from kick_hub.scoring import stats
x = np.linspace(0, 1, 40) ** 2
y = x.copy(); y[::3] -= 0.05
p = stats.paired(stats.Series(list(range(40)), x), stats.Series(list(range(40)), y), key="icsum")
print(json.dumps([p.low, p.high, p.p, p.rel_low, p.rel_high]))
"""


def test_sign_flip_intervals_are_the_same_in_every_process():
    runs = [json.loads(subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                                      check=True).stdout) for _ in range(2)]
    assert runs[0] == runs[1] and runs[0][1] < 0  # 14 of 40 lowered by 0.05: significant


def test_the_issue_input_through_report_findings_and_card(tmp_path):
    """dense right on all 100 factoid questions, wanda-50 loses 4 and gains none, wanda-60 loses 15: only
    wanda-60 is marked and counted as the first significant loss; the card and the plots' bands agree."""
    store = Store(tmp_path, "world")
    run = store.start_run(["test"])
    nll = [1.0, 1.2, 0.8, 1.1, 0.9, 1.0, 1.3, 0.7]
    _write(store, "dense", None, [1] * 100, nll, run)
    _write(store, "wanda-50", _spec(0.5), [0] * 4 + [1] * 96, nll, run)
    report.write(store, tmp_path)
    rows, dense = analysis.table_data(store)
    facts = json.loads((tmp_path / "findings.json").read_text())
    md = (tmp_path / "report.md").read_text()
    w50 = next(r for r in rows if r["label"] == "wanda-50")
    assert not w50["paired"]["factoid-qa"].significant
    assert facts["paired"]["wanda-50"]["factoid-qa"]["significant"] is False
    assert facts["paired"]["wanda-50"]["factoid-qa"]["method"] == "mcnemar"
    assert facts["first_significant_loss"]["factoid-qa"] == {"wanda": None}
    first = facts["findings"][0]  # no significant knowledge loss; the interval even excludes a 5 % one
    assert first["verdict"] == "not confirmed" and "knowledge never lost significantly" in first["evidence"][0]
    assert "| wanda-50 | 0.96 ± 0.02 (0.96) |" in md  # no *
    assert "-0.04 [-0.04, +0.00819]; McNemar p = 0.12" in md
    assert "(significant)" not in card._noise({"row": w50, "dense_se": {}}, "factoid-qa")

    _write(store, "wanda-60", _spec(0.6), [0] * 15 + [1] * 85, [a + 0.5 for a in nll], run)
    report.write(store, tmp_path)
    rows, _ = analysis.table_data(store)
    store.close()
    facts = json.loads((tmp_path / "findings.json").read_text())
    md = (tmp_path / "report.md").read_text()
    w60 = next(r for r in rows if r["label"] == "wanda-60")
    assert w60["paired"]["factoid-qa"].significant and w60["paired"]["perplexity"].method == "sign-flip"
    assert facts["first_significant_loss"]["factoid-qa"] == {"wanda": 0.6}
    assert "(0.85*)" in md and "(0.96)" in md
    assert card._noise({"row": w60, "dense_se": {}}, "factoid-qa").endswith("(significant)")
    # perplexity: every one of the 8 texts worse by 0.5 nats: p = 2 / 2^8 (all 256 sign vectors enumerated)
    assert w60["paired"]["perplexity"].p == pytest.approx(2 / 256) and w60["paired"]["perplexity"].low > 0
    assert plots._band(w60, "factoid-qa")[1] < 1 and plots._band(w50, "factoid-qa")[1] > 1


def test_a_corpus_statistic_gets_the_swap_test_and_no_interval():
    """distinct-2 of the outputs: a statistic of the whole set, so the verdict is the paired swap test's p (each
    example's two outputs exchanged) and no interval is printed that could disagree with it."""
    samples = [{"id": i, "output": f"the answer is number {i} of many"} for i in range(30)]
    same = stats.series("instruction-following", "distinct_2", samples)
    p = stats.paired(same, same, key="instruction-following")
    assert (p.method, p.p, p.low, p.significant) == ("swap", 1.0, None, False) and "no interval" in p.reason
    repeated = stats.series("instruction-following", "distinct_2",
                            [{"id": i, "output": "the answer the answer the answer"} for i in range(30)])
    worse = stats.paired(same, repeated, key="instruction-following")
    assert worse.diff < 0 and worse.p == pytest.approx(1 / 2001) and worse.significant
    row = {"label": "v", "paired": {"instruction-following": worse}}
    assert report._paired_cell(row, "instruction-following").endswith(" *; swap p = 0.0005")
