"""How sure each number is: standard errors, paired comparisons against dense, McNemar's test and sample sizes.

The one place for the statistics (docs/statistics.md). Every function is deterministic: bootstraps draw from
``numpy.random.default_rng`` seeded with ``SEED`` (and, for a paired comparison, the task's name), so the same inputs
give the same intervals in every process.

- Standard error of a 0/1 metric (exact match, accuracy): ``mean_stderr``, lm-evaluation-harness's
  ``lm_eval.api.metrics.mean_stderr`` (sample standard deviation / sqrt(n)), which for 0/1 values is the binomial
  ``sqrt(p (1 - p) / (n - 1))``.
- Standard error of a mean of graded scores (ROUGE, F1, judge scores): ``bootstrap_stderr``, the standard deviation
  of ``BOOTSTRAP_ITERS`` resampled means (lm-evaluation-harness bootstraps its non-mean metrics the same way).
- Standard error of corpus perplexity ``exp(sum NLL / sum tokens)``: ``perplexity_stderr``, the delta method on the
  ratio estimator with texts as the sampling units (tokens of one text are not independent).
- Variant vs dense on the same examples: ``paired`` (paired bootstrap of the difference and of the relative score,
  percentile 95 % interval; McNemar's exact test for 0/1 metrics, ``mcnemar_exact``) and ``examples_needed`` (the
  number of examples at which a difference of a given size would be significant with 80 % power).
- Fewer than 2 examples: a value has no interval; ``Estimate.reason`` / ``Paired.reason`` say why. No function
  returns NaN.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

SEED = 0  # every bootstrap's seed (recorded in the report and findings.json)
BOOTSTRAP_ITERS = 2000  # resamples per bootstrap
CONFIDENCE = 0.95  # the paired intervals' coverage
POWER = 0.80  # the power ``examples_needed`` plans for
TOO_FEW = "n = {n}: an interval needs at least 2 examples"


class TooFewExamples(ValueError):
    """A standard error or interval was asked of fewer than 2 examples."""


def _check_n(n: int) -> None:
    if n < 2:
        raise TooFewExamples(TOO_FEW.format(n=n))


# ----------------------------------------------------------------- standard errors of one score
def mean_stderr(values: Sequence[float]) -> float:
    """Standard error of the mean of ``values`` (shape ``[n]``): sample standard deviation (n - 1) / sqrt(n), as
    ``lm_eval.api.metrics.mean_stderr``; for 0/1 values this is ``sqrt(p (1 - p) / (n - 1))``. Raises
    TooFewExamples for n < 2."""
    x = np.asarray(values, dtype=np.float64)
    _check_n(len(x))
    return float(np.std(x, ddof=1) / math.sqrt(len(x)))


def bootstrap_stderr(values: Sequence, statistic: Callable[[np.ndarray], np.ndarray] | None = None,
                     iters: int = BOOTSTRAP_ITERS, seed: int = SEED) -> float:
    """Bootstrap standard error of ``statistic`` over ``values`` (``[n]`` numbers, or any sequence when
    ``statistic`` is given): the sample standard deviation of ``iters`` statistics of resamples drawn with
    replacement (Efron & Tibshirani 1993; lm-evaluation-harness's ``bootstrap_stderr``), from
    ``numpy.random.default_rng(seed)``. ``statistic`` maps an index matrix ``[iters, n]`` to ``[iters]`` values;
    default: the mean of ``values``. Raises TooFewExamples for n < 2."""
    n = len(values)
    _check_n(n)
    idx = np.random.default_rng(seed).integers(0, n, size=(iters, n))
    if statistic is None:
        reps = np.asarray(values, dtype=np.float64)[idx].mean(axis=1)
    else:
        reps = np.asarray(statistic(idx), dtype=np.float64)
    return float(np.std(reps, ddof=1))


def perplexity_stderr(nll: Sequence[float], tokens: Sequence[int]) -> float:
    """Standard error of corpus perplexity ``exp(R)``, ``R = sum(nll) / sum(tokens)`` (``nll[i]``: text i's summed
    negative log-likelihood in nats; ``tokens[i]``: its predicted tokens), by the delta method with texts as the
    sampling units: ``se(R)^2 = n / (n - 1) * sum((nll_i - R tokens_i)^2) / sum(tokens)^2`` (the ratio estimator's
    linearisation, Cochran 1977 ch. 6) and ``se(exp R) = exp(R) se(R)``. ``inf`` when the perplexity itself
    overflows. Raises TooFewExamples for n < 2 and ValueError when no token was predicted."""
    r, se_r = nll_stderr(nll, tokens)
    try:
        return math.exp(r) * se_r
    except OverflowError:
        return math.inf


def nll_stderr(nll: Sequence[float], tokens: Sequence[int]) -> tuple[float, float]:
    """``(R, se(R))``: the mean NLL per token ``R = sum(nll) / sum(tokens)`` and its delta-method standard error
    with texts as the sampling units (see ``perplexity_stderr``). Raises TooFewExamples for n < 2 and ValueError
    when no token was predicted."""
    a, t = np.asarray(nll, dtype=np.float64), np.asarray(tokens, dtype=np.float64)
    n = len(a)
    _check_n(n)
    if t.sum() <= 0:
        raise ValueError("tokens: no predicted tokens")
    r = float(a.sum() / t.sum())
    return r, math.sqrt(n / (n - 1) * float(np.sum((a - r * t) ** 2))) / float(t.sum())


# ----------------------------------------------------------------- per-example values of a task's metric
@dataclass
class Series:
    """One metric's per-example values of one model on one task, keyed by example id.

    ``kind``: ``mean`` (the metric is the mean of ``values``, shape ``[n]``), ``perplexity`` (``exp(sum values /
    sum weights)``: values are per-text NLL sums in nats, weights their predicted tokens), ``nll`` (the same ratio
    without ``exp``) or ``corpus`` (``corpus(texts)``, a statistic of the whole set of outputs such as distinct-n;
    ``values`` unused)."""

    ids: list
    values: np.ndarray
    kind: str = "mean"
    weights: np.ndarray | None = None
    texts: list[str] | None = None
    corpus: Callable[[list[str]], float] | None = None

    @property
    def n(self) -> int:
        """Examples."""
        return len(self.ids)

    def binary(self) -> bool:
        """Whether every value is 0 or 1 (a 0/1 metric: binomial standard error, McNemar's test)."""
        return self.kind == "mean" and bool(np.all((self.values == 0) | (self.values == 1)))

    def stat(self, idx: np.ndarray) -> np.ndarray:
        """The metric on each row of resampled indices ``idx`` (``[iters, n]``) -> ``[iters]``."""
        if self.kind == "mean":
            return self.values[idx].mean(axis=-1)
        if self.kind in ("perplexity", "nll"):
            with np.errstate(over="ignore"):
                r = self.values[idx].sum(axis=-1) / self.weights[idx].sum(axis=-1)
                return np.exp(r) if self.kind == "perplexity" else r
        rows = np.atleast_2d(idx)
        if hasattr(self.corpus, "many"):  # every resample at once (distinct-n: 2000 resamples in milliseconds)
            return self.corpus.many(self.texts, rows)
        return np.array([self.corpus([self.texts[i] for i in row]) for row in rows])

    def value(self) -> float:
        """The metric over all the examples."""
        return float(self.stat(np.arange(self.n)[None, :])[0])

    def subset(self, ids: list) -> Series:
        """The same series restricted to (and ordered by) ``ids``, each of which it must hold."""
        pos = {i: k for k, i in enumerate(self.ids)}
        take = [pos[i] for i in ids]
        return Series(list(ids), self.values[take], self.kind,
                      None if self.weights is None else self.weights[take],
                      None if self.texts is None else [self.texts[k] for k in take], self.corpus)


# task -> metric -> the sample field holding each example's value (the headline metric is ``score``)
FIELDS: dict[str, dict[str, str]] = {
    "factoid-qa": {"exact_match": "score", "contains": "contains"},
    "mcq-reasoning": {"accuracy": "score", "accuracy_loglik": "score_loglik", "accuracy_generate": "score_generate"},
    "icra-qa": {"exact_match": "score", "f1": "f1", "closed_book_exact_match": "closed_book_score",
                "closed_book_f1": "closed_book_f1"},
    "icsum": {"rougeL": "score", "rouge1": "rouge1"},
    "instruction-following": {"rougeL": "score"},
}
DIFFERENCES = {("icra-qa", "open_minus_closed_exact_match"): ("score", "closed_book_score")}
JUDGED = ("icsum", "instruction-following")  # judge_<criterion>: sample["judge"][criterion]


def _num(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


class DistinctN:
    """distinct-n of a set of outputs (``kick_hub.scoring.text.distinct_n``: distinct n-grams / all n-grams), as a
    ``Series.corpus`` statistic: ``self(texts)`` for one set, ``many(texts, idx)`` for every resample of a bootstrap
    at once (``idx`` ``[iters, n]`` -> ``[iters]``): each text's n-grams are counted once, then a resample's total is
    its texts' counts times their multiplicity and its distinct count the n-grams present in any of them (a sparse
    texts x n-grams incidence product), equal to ``distinct_n`` on the resampled list."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, texts: list[str]) -> float:
        from kick_hub.scoring.text import distinct_n

        return distinct_n(texts, self.n)

    def many(self, texts: list[str], idx: np.ndarray) -> np.ndarray:
        from scipy.sparse import csr_matrix

        from kick_hub.scoring.text import words

        ids: dict[tuple, int] = {}
        grams = [[ids.setdefault(tuple(t[i:i + self.n]), len(ids)) for i in range(len(t) - self.n + 1)]
                 for t in (words(x) for x in texts)]
        rows = [r for r, g in enumerate(grams) for _ in set(g)]
        cols = [c for g in grams for c in set(g)]
        incidence = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(texts), max(len(ids), 1)))
        counts = np.stack([np.bincount(r, minlength=len(texts)) for r in idx]).astype(np.float64)  # [iters, n]
        total = counts @ np.array([len(g) for g in grams], dtype=np.float64)
        distinct = np.asarray(((csr_matrix(counts) @ incidence) > 0).sum(axis=1)).ravel()
        return np.divide(distinct, total, out=np.zeros_like(total), where=total > 0)


def _distinct(n: int) -> DistinctN:
    return DistinctN(n)


def series(task: str, metric: str, samples: list[dict]) -> Series | None:
    """The per-example values of ``metric`` (a key of a task's results) in ``samples`` (the task's sample records,
    each with ``id``), over the examples scored (no ``skipped``) whose value is a finite number; None when the
    metric is not a per-example statistic the records hold (a count, a per-bucket dict, a ratio of means)."""
    scored = [s for s in samples if "skipped" not in s]
    ids, vals, weights = [], [], []
    if task == "perplexity" and metric in ("perplexity", "nll"):
        for s in scored:
            a, t = _num(s.get("nll")), _num(s.get("tokens"))
            if a is not None and t:
                ids.append(_key(s, len(ids))), vals.append(a), weights.append(t)
        if not ids or len(ids) < len(scored):
            return None  # a text without its NLL and tokens (or a non-finite one): no honest series
        return Series(_unique(ids), np.array(vals), metric, np.array(weights))
    if task in ("instruction-following",) and metric.startswith("distinct_") and metric[9:].isdigit():
        texts = [s.get("output", "") for s in scored]
        return Series([_key(s, k) for k, s in enumerate(scored)], np.zeros(len(scored)), "corpus", texts=texts,
                      corpus=_distinct(int(metric[9:])))
    if (task, metric) in DIFFERENCES:
        a, b = DIFFERENCES[(task, metric)]
        get = lambda s: (None if _num(s.get(a)) is None or _num(s.get(b)) is None  # noqa: E731
                         else _num(s[a]) - _num(s[b]))
    elif task in JUDGED and metric.startswith("judge_"):
        crit = metric[6:]
        get = lambda s: _num((s.get("judge") or {}).get(crit))  # noqa: E731
    elif metric in FIELDS.get(task, {}):
        name = FIELDS[task][metric]
        get = lambda s: _num(s.get(name))  # noqa: E731
    else:
        return None
    for k, s in enumerate(scored):
        v = get(s)
        if v is not None:
            ids.append(_key(s, k)), vals.append(v)
    return Series(_unique(ids), np.array(vals, dtype=np.float64)) if ids else None


def _unique(ids: list) -> list:
    """``ids``, or positions when the records repeat an id (pairing by id needs each once)."""
    return ids if len(set(ids)) == len(ids) else [f"#{k}" for k in range(len(ids))]


def _key(sample: dict, position: int):
    """An example's key for pairing: its record ``id`` (the data's stable example id), else its position."""
    return sample.get("id", f"#{position}")


@dataclass(frozen=True)
class Estimate:
    """A score with its standard error: ``stderr`` None (and ``reason`` saying why) when there is none."""

    value: float
    n: int
    stderr: float | None
    method: str | None = None  # binomial / bootstrap / delta
    reason: str | None = None


def estimate(s: Series) -> Estimate:
    """``s``'s metric with its standard error: binomial (lm-eval's ``mean_stderr``) for a 0/1 metric, bootstrap of
    the mean for graded scores and of the statistic for corpus ones, delta method for perplexity / NLL. With fewer
    than 2 examples (or a non-finite error) the value comes without one and ``reason`` says why."""
    value = s.value()
    if s.n < 2:
        return Estimate(value, s.n, None, None, TOO_FEW.format(n=s.n))
    if s.kind == "mean" and s.binary():
        se, method = mean_stderr(s.values), "binomial"
    elif s.kind == "mean":
        se, method = bootstrap_stderr(s.values), "bootstrap"
    elif s.kind == "perplexity":
        se, method = perplexity_stderr(s.values, s.weights), "delta"
    elif s.kind == "nll":
        se, method = nll_stderr(s.values, s.weights)[1], "delta"
    else:
        se, method = bootstrap_stderr(s.texts, s.stat), "bootstrap"
    if not math.isfinite(se):
        return Estimate(value, s.n, None, method, "standard error not finite (perplexity overflows)")
    return Estimate(value, s.n, se, method)


def task_stderrs(task: str, scores: dict, samples: list[dict]) -> dict[str, float]:
    """``{"<metric>_stderr": value}`` (lm-evaluation-harness's naming) for every number in ``scores`` (one task's
    results) that ``samples`` give per-example values for and that has at least 2 examples; a metric with fewer
    gets no key (its value stands alone, never NaN)."""
    out = {}
    for metric, value in scores.items():
        if metric.endswith("_stderr") or _num(value) is None:
            continue
        s = series(task, metric, samples)
        if s is None:
            continue
        e = estimate(s)
        if e.stderr is not None:
            out[f"{metric}_stderr"] = e.stderr
    return out


# ----------------------------------------------------------------- variant vs dense on the same examples
def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided p-value of McNemar's exact test (McNemar 1947): ``b`` examples right under A only, ``c`` right
    under B only; the exact binomial test of ``min(b, c)`` successes in ``b + c`` trials at p = 1/2
    (``scipy.stats.binomtest``). 1.0 when there are no discordant pairs. Raises ValueError for negative counts."""
    if b < 0 or c < 0:
        raise ValueError(f"b, c: discordant counts must be >= 0, got {b}, {c}")
    if b + c == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(min(1.0, binomtest(min(b, c), b + c, 0.5, alternative="two-sided").pvalue))


def examples_needed(effect: float, stderr: float, n: int, alpha: float = 1 - CONFIDENCE,
                    power: float = POWER) -> int | None:
    """Examples at which a true difference of size ``effect`` would be significant (two-sided ``alpha``) with
    probability ``power``, scaling a standard error ``stderr`` observed at ``n`` examples as 1/sqrt(n):
    ``ceil(n (z_{1-alpha/2} + z_power)^2 stderr^2 / effect^2)`` (the normal-approximation sample size of a paired
    design, Connor 1987). None when ``effect`` is 0 or ``stderr`` / ``n`` give nothing to scale."""
    from scipy.stats import norm

    if not effect or not math.isfinite(effect) or not math.isfinite(stderr) or stderr <= 0 or n < 1:
        return None
    z = float(norm.ppf(1 - alpha / 2) + norm.ppf(power))
    return max(2, math.ceil(n * (z * stderr / abs(effect)) ** 2))


def _seed(key: str, seed: int) -> np.random.SeedSequence:
    """A bootstrap's seed: ``seed`` with a stable hash (CRC-32) of ``key``, so comparisons on different tasks
    resample independently while two variants compared on the same task share their resamples (paired)."""
    return np.random.SeedSequence([seed, zlib.crc32(key.encode())])


@dataclass
class Paired:
    """Variant vs dense on the examples both scored. ``diff`` = variant - dense (on the metric's scale), ``low`` /
    ``high`` its percentile interval; ``rel`` = variant / dense (dense / variant when ``lower_is_better``) with
    ``rel_low`` / ``rel_high``; ``significant`` when the interval of ``diff`` excludes 0. For a 0/1 metric ``b`` /
    ``c`` count the examples right under dense only / the variant only and ``p_mcnemar`` is McNemar's exact p.
    ``reason`` says why there is no interval (then ``low`` ... are None)."""

    n: int
    dense: float
    variant: float
    diff: float
    low: float | None = None
    high: float | None = None
    rel: float | None = None
    rel_low: float | None = None
    rel_high: float | None = None
    stderr: float | None = None
    rel_stderr: float | None = None
    b: int | None = None
    c: int | None = None
    p_mcnemar: float | None = None
    seed: int = SEED
    iters: int = BOOTSTRAP_ITERS
    reason: str | None = None
    ids: list = field(default_factory=list, repr=False)
    rel_reps: np.ndarray | None = field(default=None, repr=False)  # the relative score of each resample

    @property
    def significant(self) -> bool:
        """Whether the interval of the difference excludes 0."""
        return self.low is not None and (self.low > 0 or self.high < 0)

    def to_dict(self) -> dict:
        """The JSON-ready fields (no resamples)."""
        keys = ("n", "dense", "variant", "diff", "low", "high", "rel", "rel_low", "rel_high", "stderr", "b", "c",
                "p_mcnemar", "seed", "iters", "reason")
        return {k: getattr(self, k) for k in keys} | {"significant": self.significant}


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray | None:
    with np.errstate(divide="ignore", invalid="ignore"):
        r = num / den
    return r if np.all(np.isfinite(r)) else None


def paired(dense: Series, variant: Series, key: str = "", lower_is_better: bool = False,
           iters: int = BOOTSTRAP_ITERS, seed: int = SEED, confidence: float = CONFIDENCE) -> Paired:
    """Paired bootstrap of variant - dense over the examples both scored (matched by id, in dense's order): each of
    ``iters`` resamples draws the same example indices for both models (from ``numpy.random.default_rng`` seeded by
    ``seed`` and ``key``, usually the task), and the interval is the percentile one at ``confidence``. The relative
    score's interval comes from the same resamples (ratios of the resampled scores; where a resample's divisor is
    0, the difference over dense's full-sample score). For 0/1 metrics McNemar's exact test is added. With fewer than
    2 shared examples the point values come with ``reason`` and no interval."""
    have = set(variant.ids)
    ids = [i for i in dense.ids if i in have]
    d, v = dense.subset(ids), variant.subset(ids)
    n = len(ids)
    dv, vv = (d.value(), v.value()) if n else (math.nan, math.nan)
    out = Paired(n, dv, vv, vv - dv, seed=seed, iters=iters, ids=ids)
    if n:
        num, den = (dv, vv) if lower_is_better else (vv, dv)
        out.rel = num / den if den and math.isfinite(num / den) else None
    if n < 2:
        out.reason = TOO_FEW.format(n=n)
        return out
    rng = np.random.default_rng(_seed(key, seed))
    idx = rng.integers(0, n, size=(iters, n))
    ds, vs = d.stat(idx), v.stat(idx)
    diffs = vs - ds
    if not np.all(np.isfinite(diffs)):
        out.reason = "a resample's score is not finite"
        return out
    tail = (1 - confidence) / 2
    out.low, out.high = (float(x) for x in np.quantile(diffs, [tail, 1 - tail]))
    out.stderr = float(np.std(diffs, ddof=1))
    rel = _ratio(ds, vs) if lower_is_better else _ratio(vs, ds)
    if rel is None and out.rel is not None:  # a resample scored 0 where it divides: hold that side at its value
        rel = _ratio(np.full(iters, dv), dv + diffs) if lower_is_better else 1 + diffs / dv
    if rel is not None and out.rel is not None:
        out.rel_reps = rel
        out.rel_low, out.rel_high = (float(x) for x in np.quantile(rel, [tail, 1 - tail]))
        out.rel_stderr = float(np.std(rel, ddof=1))
    if d.binary() and v.binary():
        out.b = int(np.sum((d.values == 1) & (v.values == 0)))
        out.c = int(np.sum((d.values == 0) & (v.values == 1)))
        out.p_mcnemar = mcnemar_exact(out.b, out.c)
    return out


@dataclass(frozen=True)
class Interval:
    """A bootstrap statistic with its percentile interval (``low`` / ``high`` None: no interval, ``reason``)."""

    value: float
    low: float | None
    high: float | None
    stderr: float | None
    n: int
    reason: str | None = None
    reps: np.ndarray | None = field(default=None, repr=False, compare=False)  # the statistic of each resample

    def excludes(self, x: float) -> bool:
        """Whether the interval lies wholly above or below ``x``."""
        return self.low is not None and (self.low > x or self.high < x)


def combine(values: list[float], reps: list[np.ndarray | None], n: int, sign: list[float] | None = None,
            confidence: float = CONFIDENCE) -> Interval:
    """The mean of ``values`` (e.g. relative scores on several tasks), or with ``sign`` the signed sum
    ``sum(sign_i * values_i)`` (a difference of two), with the percentile interval of the same combination of
    their bootstrap resamples ``reps`` (``[iters]`` each; resamples of different tasks are independent, of the same
    task paired). ``n``: the examples behind it, for the report. No interval when a resample is missing."""
    w = np.asarray(sign, dtype=np.float64) if sign is not None else np.full(len(values), 1 / len(values))
    value = float(np.dot(w, values))
    if any(r is None for r in reps) or len({len(r) for r in reps}) != 1:
        return Interval(value, None, None, None, n, "no paired resamples for every part")
    return _interval(value, np.tensordot(w, np.stack(reps), axes=1), n, confidence)


def _interval(value: float, reps: np.ndarray, n: int, confidence: float = CONFIDENCE) -> Interval:
    tail = (1 - confidence) / 2
    low, high = (float(x) for x in np.quantile(reps, [tail, 1 - tail]))
    return Interval(value, low, high, float(np.std(reps, ddof=1)), n, reps=reps)


def difference(a: Interval, b: Interval, confidence: float = CONFIDENCE) -> Interval:
    """``a - b`` with the percentile interval of the differences of their resamples (paired when both were drawn
    with the same seeds on the same examples, independent otherwise); no interval when either has no resamples."""
    n = min(a.n, b.n)
    if a.reps is None or b.reps is None or len(a.reps) != len(b.reps):
        return Interval(a.value - b.value, None, None, None, n, a.reason or b.reason or "no resamples")
    return _interval(a.value - b.value, a.reps - b.reps, n, confidence)
