"""Which signal tracks knowledge (kick_hub/bench/signals.py): the Spearman rank correlation against scipy and a
by-hand bootstrap, its refusals and determinism; the bootstrap interval's coverage of the true rho and the paired
difference's false-positive rate, both measured by simulation on bivariate / trivariate normal data; each variant's
signal values from ``analysis.table_data``-shaped rows (real ``stats.Flips``); ``analyse`` and ``finding`` on hand-built
sweeps (confirmed, not confirmed, inconclusive, not measured; dense never a point); ``sections``' tables and
``figure``'s panels. No model is loaded."""

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import rankdata, spearmanr

from kick_hub.bench import signals
from kick_hub.bench.analysis import HEADLINE, KNOWLEDGE, knowledge
from kick_hub.io import format_number
from kick_hub.scoring import stats

pytestmark = pytest.mark.unit


# ---------------------------------------------------------------- spearman
CASES = [
    ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], [2.0, 1.0, 4.0, 3.0, 5.0, 8.0, 6.0, 7.0]),
    ([1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 5.0, 6.0], [0.3, 0.1, 0.2, 0.9, 0.5, 0.5, 0.4, 0.7]),  # ties in both
    ([1.2, math.inf, 0.7, 3.0, 2.2, 1.9, 0.2, 2.5], [0.1, 0.9, 0.05, 0.4, 0.6, 0.3, 0.2, 0.8]),  # inf ranks first
    ([1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 3.0, 4.0], [5.0, 4.0, 4.0, 4.0, 3.0, 1.0, 0.0, 0.0]),
]


def _by_hand(x, y):
    """Pearson's r of the average ranks: Spearman's rho with ties."""
    rx, ry = rankdata(x), rankdata(y)
    return float(np.corrcoef(rx, ry)[0, 1])


@pytest.mark.parametrize("x, y", CASES)
def test_spearman_matches_scipy_with_ties_and_inf(x, y):
    c = signals.spearman(x, y, labels=[f"v{i}" for i in range(len(x))], iters=200)
    finite = [1e300 if v == math.inf else v for v in x]  # the same ranks without inf
    assert c.rho == pytest.approx(spearmanr(finite, y).statistic, abs=1e-12)
    assert c.rho == pytest.approx(_by_hand(x, y), abs=1e-12)
    assert c.n == len(x) and c.labels == tuple(f"v{i}" for i in range(len(x)))
    assert -1.0 <= c.low <= c.high <= 1.0 and c.reason is None


def test_bootstrap_interval_is_the_percentile_of_scipys_resampled_rhos():
    """The vectorised resampled correlations equal scipy's, resample by resample; constant resamples dropped."""
    x, y = CASES[3]  # eight variants, five tied: some resamples draw only the tied ones
    iters, seed = 300, 7
    c = signals.spearman(x, y, iters=iters, seed=seed)
    idx = np.random.default_rng(seed).integers(0, len(x), size=(iters, len(x)))
    reps = []
    for row in idx:
        xs, ys = np.asarray(x)[row], np.asarray(y)[row]
        if len(set(xs)) > 1 and len(set(ys)) > 1:
            reps.append(spearmanr(xs, ys).statistic)
    assert len(reps) < iters  # some resamples are constant: left out, not counted as 0
    lo, hi = np.quantile(reps, [0.025, 0.975])
    assert (c.low, c.high) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))
    assert c.text() == f"{c.rho:.2f} [{c.low:.2f}, {c.high:.2f}]"
    assert c.to_dict() == {"n": 8, "rho": c.rho, "low": c.low, "high": c.high, "reason": None, "variants": []}


def test_spearman_refuses_too_few_and_constant():
    few = signals.spearman([1, 2, 3], [3, 2, 1], labels=["a", "b", "c"])
    assert few.rho is None and few.low is None and few.n == 3 and few.labels == ("a", "b", "c")
    assert few.reason == signals.TOO_FEW.format(n=3, m=signals.MIN_VARIANTS)
    assert few.text() == few.reason and "n = 3" in few.reason and "at least 8" in few.reason
    seven = signals.spearman(range(7), range(7))  # below 8 the interval is too narrow (module docstring)
    assert seven.rho is None and seven.reason == signals.TOO_FEW.format(n=7, m=8)
    flat_signal = signals.spearman([2] * 8, [1, 2, 3, 4, 5, 6, 7, 8])
    assert flat_signal.rho is None and flat_signal.reason == "the signal is the same for every variant: no ranking"
    flat_y = signals.spearman([1, 2, 3, 4, 5, 6, 7, 8], [0.5] * 8)
    assert flat_y.rho is None and flat_y.reason == "knowledge is the same for every variant: no ranking"
    # eight variants, each variable with one odd one out (not the same one): a rho, but a resample misses either odd
    # one with probability 2 (7/8)^8 - (6/8)^8 = 0.59, so most resamples have a constant variable
    x, y = [0] * 7 + [1], [0] * 6 + [1, 0]
    sparse = signals.spearman(x, y, iters=2000)
    assert sparse.rho == pytest.approx(spearmanr(x, y).statistic) and sparse.low is None and sparse.high is None
    assert sparse.reason == "most resamples had a constant variable"
    assert sparse.text() == "-0.14 (no interval: most resamples had a constant variable)"


@pytest.mark.parametrize("x, y, message", [
    ([1, 2, 3, 4], [1, 2, 3], "x, y: need two sequences of one length"),
    ([1, 2, math.nan, 4], [1, 2, 3, 4], "x, y: NaN has no rank"),
    ([1, 2, 3, 4], [1, math.nan, 3, 4], "x, y: NaN has no rank"),
    ([[1, 2], [3, 4]], [[1, 2], [3, 4]], "x, y: need two sequences of one length"),
])
def test_spearman_rejects_nan_and_mismatched_lengths(x, y, message):
    with pytest.raises(ValueError, match=message):
        signals.spearman(x, y)
    with pytest.raises(ValueError, match=message):
        signals.difference(x, x, y)


SNIPPET = ("from kick_hub.bench import signals\n"
           "c = signals.spearman([0.3, 0.1, 0.2, 0.9, 0.5, 0.5, 0.4, 0.8], [1, 2, 2, 3, 4, 4, 5, 6])\n"
           "print(repr((c.rho, c.low, c.high)))")


def test_spearman_is_deterministic_here_and_in_a_fresh_process():
    a = signals.spearman([0.3, 0.1, 0.2, 0.9, 0.5, 0.5, 0.4, 0.8], [1, 2, 2, 3, 4, 4, 5, 6])
    b = signals.spearman([0.3, 0.1, 0.2, 0.9, 0.5, 0.5, 0.4, 0.8], [1, 2, 2, 3, 4, 4, 5, 6])
    assert (a.rho, a.low, a.high) == (b.rho, b.low, b.high) and a.low < a.high
    out = subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == repr((a.rho, a.low, a.high))
    other = signals.spearman([0.3, 0.1, 0.2, 0.9, 0.5, 0.5, 0.4, 0.8], [1, 2, 2, 3, 4, 4, 5, 6], seed=1)
    assert other.rho == a.rho and (other.low, other.high) != (a.low, a.high)  # the seed picks the resamples


# ---------------------------------------------------------------- coverage and false positives, by simulation
SIM_SAMPLES, SIM_ITERS = 1000, 500


@pytest.mark.parametrize("n", [10, 30])
def test_bootstrap_interval_covers_true_rho_on_bivariate_normal_data(n):
    """Bivariate normal with Pearson r = 0.5: the population Spearman rho is (6 / pi) asin(r / 2). The module
    docstring claims 95-98 % coverage at 10-30 variants; with 1000 samples the binomial standard error near 0.95 is
    about 0.007, so a correct claim lands in [0.92, 0.995] with overwhelming probability (4.3 sigma below 0.95,
    3.4 sigma above 0.98)."""
    r = 0.5
    true = 6 / math.pi * math.asin(r / 2)
    rng = np.random.default_rng(20240601 + n)
    hits = 0
    for i in range(SIM_SAMPLES):
        xy = rng.multivariate_normal([0.0, 0.0], [[1.0, r], [r, 1.0]], size=n)
        c = signals.spearman(xy[:, 0], xy[:, 1], iters=SIM_ITERS, seed=i)
        assert c.low is not None  # continuous data: never a constant resample majority
        hits += c.low <= true <= c.high
    coverage = hits / SIM_SAMPLES
    print(f"coverage n={n}: {coverage:.4f}")
    assert 0.92 <= coverage <= 0.995, coverage


def test_bootstrap_interval_at_the_fewest_variants_covers_a_strong_rho():
    """At ``MIN_VARIANTS`` = 8 variants and a strong correlation (Pearson r = 0.9, Spearman rho 0.89), where the
    percentile bootstrap is narrowest: coverage measured 97 % (at 4-6 variants it falls to 60-87 %, which is why
    fewer give no number); with 1000 samples a coverage of 0.92 or more is required."""
    r, n = 0.9, signals.MIN_VARIANTS
    true = 6 / math.pi * math.asin(r / 2)
    rng = np.random.default_rng(8)
    hits = 0
    for i in range(SIM_SAMPLES):
        xy = rng.multivariate_normal([0.0, 0.0], [[1.0, r], [r, 1.0]], size=n)
        c = signals.spearman(xy[:, 0], xy[:, 1], iters=SIM_ITERS, seed=i)
        hits += c.low is not None and c.low <= true <= c.high
    coverage = hits / SIM_SAMPLES
    print(f"coverage n={n}, rho {true:.2f}: {coverage:.4f}")
    assert coverage >= 0.92, coverage


def test_difference_of_exchangeable_signals_rarely_excludes_zero():
    """Two signals equally good (exchangeable: each is knowledge loss plus independent noise of one size): the
    paired interval of rho_a - rho_b should exclude 0 in about 5 % of sweeps; at most 7 % allowed (300 sweeps at
    n = 12 and 300 at n = 30; the binomial standard error at 5 % is about 0.009)."""
    rng = np.random.default_rng(99)
    false_pos = total = 0
    for n in (12, 30):
        for i in range(300):
            y = rng.normal(size=n)
            a, b = y + rng.normal(size=n), y + rng.normal(size=n)
            d = signals.difference(a, b, y, iters=SIM_ITERS, seed=i)
            assert d.low is not None and d.rho == pytest.approx(
                spearmanr(a, y).statistic - spearmanr(b, y).statistic, abs=1e-12)
            false_pos += d.low > 0 or d.high < 0
            total += 1
    rate = false_pos / total
    print(f"difference false-positive rate: {rate:.4f}")
    assert rate <= 0.07, rate


def test_difference_refuses_as_spearman_does():
    d = signals.difference([1, 2, 3], [3, 2, 1], [1, 2, 3])
    assert d.rho is None and d.reason == signals.TOO_FEW.format(n=3, m=signals.MIN_VARIANTS)
    up, down = [1, 2, 3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4, 3, 2, 1]
    flat_a = signals.difference([1] * 8, up, down)
    assert flat_a.rho is None and flat_a.reason == "the signal is the same for every variant: no ranking"
    flat_y = signals.difference(up, down, [2] * 8)
    assert flat_y.rho is None and flat_y.reason == "knowledge is the same for every variant: no ranking"
    perfect = signals.difference(up, down, up, iters=300)
    assert perfect.rho == pytest.approx(2.0) and perfect.low == pytest.approx(2.0) and perfect.high == pytest.approx(
        2.0)


def test_difference_says_why_when_the_second_signal_is_constant():
    """A constant perplexity ratio (the second signal): the reason is the constant signal, not the resamples."""
    flat_b = signals.difference([1, 2, 3, 4, 5, 6, 7, 8], [1] * 8, [8, 7, 6, 5, 4, 3, 2, 1])
    assert flat_b.rho is None and flat_b.reason == "the signal is the same for every variant: no ranking"
    a = signals.analyse(_sweep(8, ppl=[1.5] * 8, kl=[0.1 * (i + 1) for i in range(8)]), iters=200)
    kl_row = signals.sections(a)[0][3][1]  # the report's table: KL's "rho - perplexity ratio's" cell
    assert kl_row[4] != "most resamples had a constant variable"


# ---------------------------------------------------------------- per-variant values
def _flips(dense: list[int], variant: list[int]) -> stats.Flips:
    ids = list(range(len(dense)))
    return stats.flips(stats.Series(ids, np.asarray(dense, dtype=float)),
                       stats.Series(ids, np.asarray(variant, dtype=float)))


def _row(label, method, rel, fidelity=None, abs_=None, flips=None):
    """A ``analysis.table_data`` row with the fields signals reads."""
    return {"label": label, "method": method, "sparsity": None, "pattern": None, "bits": None, "rel": rel,
            "abs": abs_ or {}, "fidelity": fidelity or {}, "flips": flips or {}, "paired": {}}


KTASKS = {t: 1.0 for t in KNOWLEDGE}
DENSE = _row("dense", "dense", {**KTASKS, "perplexity": 1.0}, abs_={"perplexity": 10.0})


def test_values_reads_each_signal_from_the_row():
    assert set(KNOWLEDGE) == {"factoid-qa", "mcq-reasoning"}  # the two knowledge tasks the rows below name
    f1 = _flips([1, 1, 0, 0, 1, 0, 1, 0], [1, 0, 1, 0, 1, 0, 0, 0])  # 3 of 8 flipped
    f2 = _flips([1, 1, 1, 1], [1, 1, 1, 0])  # 1 of 4 flipped
    assert (f1.rate("flipped"), f2.rate("flipped")) == (3 / 8, 1 / 4)
    row = _row("m50", "magnitude", {"factoid-qa": 0.8, "mcq-reasoning": 0.6},
               fidelity={"ppl_ratio": 1.25, "kl_mean": 0.42, "top1_agreement": 0.9},
               abs_={"perplexity": 99.0},
               flips={"factoid-qa": {HEADLINE["factoid-qa"]: f1}, "mcq-reasoning": {HEADLINE["mcq-reasoning"]: f2}})
    v = signals.values(row, DENSE)
    assert v == {"ppl_ratio": 1.25,  # the fidelity's ratio wins over abs perplexity / dense's (9.9)
                 "kl_mean": 0.42, "top1_disagreement": pytest.approx(0.1), "flip_rate": pytest.approx(5 / 16)}
    assert signals.flip_rate(row) == pytest.approx((3 / 8 + 1 / 4) / 2)


def test_values_falls_back_to_perplexity_over_dense_and_leaves_out_what_is_missing():
    row = _row("q4", "gptq", {"factoid-qa": 0.9}, abs_={"perplexity": 12.5})
    assert signals.values(row, DENSE) == {"ppl_ratio": pytest.approx(1.25)}
    assert signals.values(row, None) == {}  # no dense row: no ratio
    broken = _row("b", "magnitude", {"factoid-qa": 0.1}, abs_={"perplexity": math.inf})
    assert signals.values(broken, DENSE) == {"ppl_ratio": math.inf}  # inf kept: it ranks last
    for dense_ppl in (0.0, math.inf, math.nan):
        assert signals.values(row, _row("dense", "dense", KTASKS, abs_={"perplexity": dense_ppl})) == {}
    odd = _row("o", "magnitude", {"factoid-qa": 0.9},
               fidelity={"ppl_ratio": math.nan, "kl_mean": True, "top1_agreement": "0.5"}, abs_={"perplexity": 15.0})
    assert signals.values(odd, DENSE) == {"ppl_ratio": pytest.approx(1.5)}  # NaN, bool, text: no number


def test_flip_rate_needs_every_knowledge_task_with_flips():
    f = _flips([1, 0, 1, 0], [0, 0, 1, 1])
    both = {"factoid-qa": 0.5, "mcq-reasoning": 0.5}
    only_one = _row("x", "magnitude", both, flips={"factoid-qa": {"exact_match": f}})
    assert signals.flip_rate(only_one) is None and "flip_rate" not in signals.values(only_one, DENSE)
    other_metric = _row("x", "magnitude", {"factoid-qa": 0.5}, flips={"factoid-qa": {"f1": f}})
    assert signals.flip_rate(other_metric) is None  # only the headline metric's flips count
    empty = _row("x", "magnitude", {"factoid-qa": 0.5}, flips={"factoid-qa": {"exact_match": _flips([], [])}})
    assert signals.flip_rate(empty) is None  # no shared example
    assert signals.flip_rate(_row("x", "magnitude", {"perplexity": 0.9})) is None  # no knowledge task
    one = _row("x", "magnitude", {"factoid-qa": 0.5}, flips={"factoid-qa": {"exact_match": f}})
    assert signals.flip_rate(one) == 0.5  # the knowledge tasks it was scored on: factoid-qa alone


# ---------------------------------------------------------------- analyse and finding
def _sweep(n, ppl, kl, top1=None, flip=None):
    """Dense plus ``n`` variants whose knowledge retained falls with the index (variant i keeps 1 - 0.05 (i + 1) on
    both knowledge tasks); each signal a list over the variants."""
    rows = [DENSE | {"fidelity": {"ppl_ratio": 1.0, "kl_mean": 0.0, "top1_agreement": 1.0}}]
    for i in range(n):
        k = 1 - 0.05 * (i + 1)
        fid = {"ppl_ratio": ppl[i], "kl_mean": kl[i]}
        if top1 is not None:
            fid["top1_agreement"] = 1 - top1[i]
        flips = {}
        if flip is not None:
            f = _flips([1] * 100, [0] * flip[i] + [1] * (100 - flip[i]))
            flips = {t: {HEADLINE[t]: f} for t in KNOWLEDGE}
        rows.append(_row(f"v{i:02d}", "magnitude" if i % 2 else "wanda", {t: k for t in KNOWLEDGE} | {
            "perplexity": 0.9}, fidelity=fid, flips=flips))
    return rows


def test_confirmed_when_kl_ranks_the_variants_and_perplexity_does_not():
    n = 12
    rows = _sweep(n, ppl=[2.0 - 0.05 * i for i in range(n)], kl=[0.1 * (i + 1) for i in range(n)],
                  top1=[0.01 * (i + 1) for i in range(n)], flip=[2 * (i + 1) for i in range(n)])
    a = signals.analyse(rows, iters=500)
    assert "dense" not in a.knowledge and list(a.knowledge) == [f"v{i:02d}" for i in range(n)]
    assert a.knowledge["v00"] == pytest.approx(knowledge(rows[1])) == pytest.approx(0.95)
    assert a.methods == {f"v{i:02d}": "magnitude" if i % 2 else "wanda" for i in range(n)}
    assert set(a.correlations) == set(signals.SIGNALS)
    for s in ("kl_mean", "top1_disagreement", "flip_rate"):
        c = a.correlations[s]
        assert c.n == n and "dense" not in c.labels and c.rho == pytest.approx(1.0)
        assert c.low == pytest.approx(1.0) and c.high == pytest.approx(1.0)
        d = a.versus[s]
        assert d.rho == pytest.approx(2.0) and d.low == pytest.approx(2.0) and d.n == n
    assert a.correlations["ppl_ratio"].rho == pytest.approx(-1.0) and "ppl_ratio" not in a.versus
    assert a.best == "kl_mean"  # ties at rho 1: the first in SIGNALS' order
    assert a.overlaps == ["top1_disagreement", "flip_rate"]
    f = signals.finding(a)
    assert f["verdict"] == "confirmed" and f["claim"] == signals.CLAIM and "n" not in f
    assert f["evidence"][0] == ("best predictor of knowledge loss in this sweep: KL mean (Spearman rho 1.00 [1.00, "
                                "1.00] over 12 variants); its interval overlaps 1 - top-1 agreement's, flip rate's "
                                "and lies apart from perplexity ratio's")
    assert "perplexity ratio: rho -1.00 [-1.00, -1.00] over 12 variants" in f["evidence"]
    assert "KL mean - perplexity ratio: +2.00 [+2.00, +2.00]" in f["evidence"]
    d = a.to_dict()
    assert d["best"] == "kl_mean" and d["correlations"]["kl_mean"]["variants"] == [f"v{i:02d}" for i in range(n)]
    assert d["minus_perplexity"]["flip_rate"]["rho"] == pytest.approx(2.0)


def test_confirmed_also_against_an_unrelated_perplexity_ratio():
    n = 12
    ppl = [1.0 + x / 10 for x in (5, 11, 2, 8, 0, 9, 3, 6, 1, 10, 4, 7)]  # a shuffle: rho near 0
    a = signals.analyse(_sweep(n, ppl=ppl, kl=[0.1 * (i + 1) for i in range(n)]), iters=500)
    ref = a.correlations["ppl_ratio"]
    assert ref.rho == pytest.approx(_by_hand(ppl, [0.05 * (i + 1) for i in range(n)])) and abs(ref.rho) < 0.3
    assert set(a.correlations) == {"ppl_ratio", "kl_mean"}  # no top-1, no flips in these rows
    assert a.versus["kl_mean"].low > 0
    assert signals.finding(a)["verdict"] == "confirmed"


def test_not_confirmed_when_perplexity_ratio_is_the_perfect_one():
    n = 12
    rows = _sweep(n, ppl=[1.0 + 0.1 * i for i in range(n)], kl=[1.2 - 0.1 * i for i in range(n)],
                  top1=[0.01 * (i + 1) for i in range(n)])
    a = signals.analyse(rows, iters=500)
    assert a.correlations["ppl_ratio"].rho == pytest.approx(1.0) and a.correlations["kl_mean"].rho == pytest.approx(-1)
    assert a.versus["kl_mean"].high == pytest.approx(-2.0) and a.versus["top1_disagreement"].rho == pytest.approx(0)
    assert a.best == "ppl_ratio" and a.overlaps == ["top1_disagreement"]
    f = signals.finding(a)
    assert f["verdict"] == "not confirmed" and "n" not in f
    assert f["evidence"][0].startswith("best predictor of knowledge loss in this sweep: perplexity ratio")


def test_few_variants_are_not_measured_and_noisy_ones_inconclusive():
    a = signals.analyse(_sweep(3, ppl=[1.1, 1.2, 1.3], kl=[0.1, 0.2, 0.3]))
    assert all(c.rho is None and c.n == 3 for c in a.correlations.values()) and a.versus == {} and a.best is None
    f = signals.finding(a)
    assert f["verdict"] == "not measured" and "n" not in f
    assert f["evidence"][-1] == "perplexity ratio: " + signals.TOO_FEW.format(n=3, m=signals.MIN_VARIANTS)
    assert signals.finding(signals.Analysis()) == {"claim": signals.CLAIM, "verdict": "not measured",
                                                    "evidence": ["perplexity ratio: not measured"]}
    # eight variants, KL a little better than perplexity: the difference's interval holds 0
    ppl, kl = [1.2, 1.1, 1.3, 1.5, 1.4, 1.6, 1.8, 1.7], [0.1, 0.2, 0.4, 0.3, 0.5, 0.6, 0.7, 0.8]
    a = signals.analyse(_sweep(8, ppl=ppl, kl=kl), iters=500)
    d = a.versus["kl_mean"]
    assert d.rho == pytest.approx(_by_hand(kl, range(8)) - _by_hand(ppl, range(8)))
    assert d.low <= 0 <= d.high
    f = signals.finding(a)
    assert f["verdict"] == "inconclusive (within noise at n = 8 variants)" and f["n"] == 8


def test_rows_without_knowledge_or_rel_are_not_points():
    rows = _sweep(5, ppl=[1.1, 1.2, 1.3, 1.4, 1.5], kl=[0.1, 0.2, 0.3, 0.4, 0.5])
    rows.append({"label": "no-rel", "method": "magnitude", "fidelity": {"kl_mean": 9.0}})
    rows.append(_row("ppl-only", "magnitude", {"perplexity": 0.5}, fidelity={"kl_mean": 9.0, "ppl_ratio": 9.0}))
    rows[0]["fidelity"]["kl_mean"] = 99.0  # dense: the reference, never a point
    a = signals.analyse(rows, iters=200)
    assert list(a.knowledge) == [f"v{i:02d}" for i in range(5)]
    assert a.values["kl_mean"] == {f"v{i:02d}": pytest.approx(0.1 * (i + 1)) for i in range(5)}
    assert a.correlations["kl_mean"].n == 5


# ---------------------------------------------------------------- tables and figure
def test_sections_tables():
    assert signals.sections(signals.Analysis()) == []
    n = 8
    rows = _sweep(n, ppl=[1.0 + 0.1 * i for i in range(n)], kl=[0.1 * (i + 1) for i in range(n)],
                  top1=[0.02 * (i + 1) for i in range(n)])
    a = signals.analyse(rows, iters=200)
    (t1, note1, head1, body1), (t2, note2, head2, body2) = signals.sections(a)
    assert t1 == "Which signal tracks knowledge" and "Fewer than 8 variants: no number" in note1
    assert head1 == ["signal", "what", "variants", "Spearman rho [95 % CI]", "rho - perplexity ratio's [95 % CI]"]
    assert body1 == [["perplexity ratio", signals.SIGNALS["ppl_ratio"][1], "8", a.correlations["ppl_ratio"].text(),
                      "-"],
                     ["KL mean", signals.SIGNALS["kl_mean"][1], "8", a.correlations["kl_mean"].text(),
                      a.versus["kl_mean"].text()],
                     ["1 - top-1 agreement", signals.SIGNALS["top1_disagreement"][1], "8",
                      a.correlations["top1_disagreement"].text(), a.versus["top1_disagreement"].text()]]
    assert body1[1][3] == "1.00 [1.00, 1.00]" and body1[1][4] == "0.00 [0.00, 0.00]"
    assert t2 == "Signals per variant"
    assert head2 == ["variant", "knowledge retained", "perplexity ratio", "KL mean", "1 - top-1 agreement"]
    assert len(body2) == n and all(len(r) == len(head2) for r in body2)
    assert body2[0] == ["v00", "0.950", format_number(1.0, ".3g"), format_number(0.1, ".3g"),
                        format_number(0.02, ".3g")]
    assert body2[-1][:2] == ["v07", "0.600"]
    partial = _sweep(4, ppl=[1.1, 1.2, 1.3, 1.4], kl=[0.1, 0.2, 0.3, 0.4])
    del partial[2]["fidelity"]["kl_mean"]  # v01 has no KL: a dash in its cell
    (_, _, _, c), (_, _, _, per) = signals.sections(signals.analyse(partial, iters=100))
    assert per[1] == ["v01", "0.900", format_number(1.2, ".3g"), "-"]
    assert c[1][2] == "3" and c[1][3] == signals.TOO_FEW.format(n=3, m=signals.MIN_VARIANTS) and c[1][4] == "-"


def test_figure_has_a_panel_per_signal_with_two_variants():
    import matplotlib.pyplot as plt

    n = 9
    ppl = [1.0 + 0.1 * i for i in range(n - 1)] + [math.inf]  # the last variant's perplexity is infinite
    rows = _sweep(n, ppl=ppl, kl=[0.1 * (i + 1) for i in range(n)], top1=[0.02 * (i + 1) for i in range(n)])
    del rows[1]["fidelity"]["top1_agreement"]  # top-1 on 8 variants
    a = signals.analyse(rows, iters=100)
    fig = signals.figure(a)
    try:
        assert fig is not None and len(fig.axes) == 3
        titles = [ax.get_title() for ax in fig.axes]
        assert titles[0] == f"perplexity ratio\nrho = {a.correlations['ppl_ratio'].text()}, n = 9"
        assert titles[1].startswith("KL mean\nrho = 1.00") and titles[2].startswith("1 - top-1 agreement")
        assert fig.axes[0].get_xlabel() == signals.SIGNALS["ppl_ratio"][1] + "\n(1 variant at ∞ not shown)"
        points = sum(len(c.get_offsets()) for c in fig.axes[0].collections)
        assert points == n - 1  # the infinite one left out of its panel
        assert sum(len(c.get_offsets()) for c in fig.axes[2].collections) == n - 1
        assert [t.get_text() for t in fig.legends[0].get_texts()] == ["magnitude", "wanda"]
    finally:
        plt.close(fig)
    one = signals.analyse(_sweep(1, ppl=[1.2], kl=[0.3]))
    assert signals.figure(one) is None and signals.figure(signals.Analysis()) is None
    two = signals.figure(signals.analyse(_sweep(2, ppl=[1.2, 1.3], kl=[0.3, 0.4])))
    try:
        assert len(two.axes) == 2 and two.axes[0].get_title().endswith(
            signals.TOO_FEW.format(n=2, m=signals.MIN_VARIANTS))
    finally:
        plt.close(two)
