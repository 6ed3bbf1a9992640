"""How sure each number is: standard errors, paired comparisons against dense, McNemar's test and sample sizes.

The one place for the statistics (docs/statistics.md). Every function is deterministic: bootstraps and sign-flip
tests draw from ``numpy.random.default_rng`` seeded with ``SEED`` (and, for a paired comparison, the task's name),
and a sign-flip test's sums are exact whole numbers, so the same inputs give the same intervals in every process.

- Standard error of a 0/1 metric (exact match, accuracy): ``mean_stderr``, lm-evaluation-harness's
  ``lm_eval.api.metrics.mean_stderr`` (sample standard deviation / sqrt(n)), which for 0/1 values is the binomial
  ``sqrt(p (1 - p) / (n - 1))``.
- Standard error of a mean of graded scores (ROUGE, F1, judge scores): ``bootstrap_stderr``, the standard deviation
  of ``BOOTSTRAP_ITERS`` resampled means (lm-evaluation-harness bootstraps its non-mean metrics the same way).
- Standard error of corpus perplexity ``exp(sum NLL / sum tokens)``: ``perplexity_stderr``, the delta method on the
  ratio estimator with texts as the sampling units (tokens of one text are not independent).
- Variant vs dense on the same examples: ``paired``. A change is significant only when a test of the right size
  rejects at 5 %, and the interval printed inverts that same test, so the two never disagree
  (``Paired.significant``, read by every table, plot, finding and card): McNemar's exact test (``mcnemar_exact``)
  with its Clopper-Pearson interval (``mcnemar_interval``) for 0/1 metrics; the paired sign-flip test with its
  inverted interval (``sign_flip``) for graded scores, perplexity and NLL; the paired swap test for corpus
  statistics. A percentile bootstrap is not used for verdicts: with few one-sided discordant examples it drops
  them all from few resamples and calls noise significant.
- Combinations for the findings: ``relative_mean`` (the share of dense knowledge kept over several tasks),
  ``relative_mean_difference`` (two variants), ``relative_difference`` (two tasks), each from tests of the right
  size; ``examples_needed`` (the number of examples at which a difference of a given size would be significant
  with 80 % power).
- Beyond the mean: ``flips`` (answers of a 0/1 metric that went right -> wrong and wrong -> right, McNemar's ``b``
  and ``c``, with exact Clopper-Pearson intervals on their rates), ``changes`` (graded scores: outputs that changed
  and scores that moved by more than ``FLIP_THRESHOLD``) and ``recognition`` (mcq-reasoning right by
  log-likelihood and / or by generation, and the right option's log-likelihood rank).
- Fewer than 2 examples: a value has no interval; ``Estimate.reason`` / ``Paired.reason`` say why. No function
  returns NaN.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from kick_hub.tasks.specs import SPECS

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
    ``values`` unused). ``texts``: the outputs, one per example (a corpus statistic's input; for a per-example
    metric ``series`` records the output each score was given to, which ``changes`` compares)."""

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


# Derived from the task declarations (``TaskSpec.stat_fields``, ``stat_differences``, ``judge_prompts``).
# task -> metric -> the sample field holding each example's value (the headline metric is ``score``)
FIELDS: dict[str, dict[str, str]] = {t: dict(s.stat_fields) for t, s in SPECS.items() if s.stat_fields}
# (task, metric) -> (field a, field b): the per-example difference a - b
DIFFERENCES: dict[tuple[str, str], tuple[str, str]] = {
    (t, m): ab for t, s in SPECS.items() for m, ab in s.stat_differences.items()}
JUDGED = tuple(t for t, s in SPECS.items() if s.judge_prompts)  # judge_<criterion>: sample["judge"][criterion]


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
    out_field = output_field(FIELDS.get(task, {}).get(metric, "score"))
    texts = []
    for k, s in enumerate(scored):
        v = get(s)
        if v is not None:
            ids.append(_key(s, k)), vals.append(v), texts.append(str(s.get(out_field, "")))
    return Series(_unique(ids), np.array(vals, dtype=np.float64), texts=texts) if ids else None


def output_field(score_field: str) -> str:
    """The sample field holding the output a per-example score was given to: ``closed_book_output`` for the
    closed-book scores, ``output_<protocol>`` for ``score_<protocol>``, else ``output``."""
    if score_field.startswith("closed_book_"):
        return "closed_book_output"
    if score_field.startswith("score_"):
        return "output_" + score_field[6:]
    return "output"


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
    """A resampling's seed: ``seed`` with a stable hash (CRC-32) of ``key``, so tests on different tasks draw
    independent sign flips while two variants compared on the same task share theirs."""
    return np.random.SeedSequence([seed, zlib.crc32(key.encode())])


SIGN_FLIPS = 2000  # random sign vectors of a sign-flip test (besides the identity)
EXACT_UP_TO = 11  # up to this many units a sign-flip test enumerates all 2^n sign vectors instead


@functools.lru_cache(maxsize=16)
def _signs(n: int, key: str, seed: int) -> np.ndarray:
    """The sign vectors of a sign-flip test on ``n`` units, ``[G, n]`` float64 of +-1 (read-only; float for BLAS,
    exact on the integers of ``_quantize``), row 0 the identity: every one of the 2^n vectors when
    ``n <= EXACT_UP_TO`` (an exact test), else the identity and ``SIGN_FLIPS`` vectors drawn from
    ``numpy.random.default_rng`` seeded by ``seed`` and ``key``."""
    if n <= EXACT_UP_TO:
        rows = (np.arange(2 ** n)[:, None] >> np.arange(n)[None, :]) & 1
    else:
        rows = np.vstack([np.zeros((1, n), dtype=np.int64),
                          np.random.default_rng(_seed(key, seed)).integers(0, 2, size=(SIGN_FLIPS, n))])
    out = (1 - 2 * rows).astype(np.float64)
    out.setflags(write=False)
    return out


def _quantize(x: np.ndarray) -> tuple[np.ndarray, float]:
    """``x`` as whole numbers (float64) and their unit (``x ~ ints * unit``), with ``sum |ints| <= 2^51`` so that
    every signed sum of them is exact in float64 whatever the order of summation: the sums of a sign-flip test
    are then exact, a tie at 0 is a tie in every process, and the p-value and the interval, both read off the
    same sums, cannot disagree."""
    top = float(np.max(np.abs(x))) if len(x) else 0.0
    if top == 0:
        return np.zeros(len(x)), 1.0
    unit = top / 2 ** (51 - math.ceil(math.log2(len(x) + 1)))
    return np.rint(x / unit), unit


def _crossings(big_a: float, big_c: float, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each sign vector j, the largest shift ``delta`` above the estimate ``A / C`` at which its statistic
    ``|a_j - delta b_j|`` (``a_j = sum_i s_ji e_i``, ``b_j = sum_i s_ji c_i``) still reaches the observed
    ``|A - delta C|`` (``A = sum e``, ``C = sum c``; exact whole numbers, ``c >= 0``). Above the estimate the
    observed statistic grows at rate C and the flipped one at most at ``|b_j| <= C``, so vector j counts exactly
    for ``delta <= crossing_j`` (``+inf``: always)."""
    out = np.full(len(a), -np.inf)
    for num, den in ((big_a + a, big_c + b), (big_a - a, big_c - b)):  # |x| = max(x, -x): two linear pieces
        q = np.where(num >= 0, np.inf, -np.inf)
        np.divide(num, den, out=q, where=den > 0)
        out = np.maximum(out, q)
    return out


def _rank(alpha: float, g: int) -> int:
    """The smallest count r of the G sign vectors with ``r / G >= alpha``: a shift is kept while at least r of them
    reach the observed statistic (its p-value ``count / G`` is then not below ``alpha``)."""
    r = max(1, math.ceil(alpha * g))
    while r > 1 and (r - 1) / g >= alpha:
        r -= 1
    while r / g < alpha:
        r += 1
    return r


@dataclass(frozen=True)
class SignFlip:
    """A sign-flip test of ``delta = sum(e) / sum(c)`` and the interval inverting it: ``low`` / ``high`` (None when
    too few units bound it), ``p`` its two-sided p-value at 0, ``groups`` the sign vectors used."""

    estimate: float
    low: float | None
    high: float | None
    p: float
    stderr: float | None
    groups: int


def sign_flip(e: Sequence[float], c: Sequence[float] | None = None, key: str = "", seed: int = SEED,
              confidence: float = CONFIDENCE) -> SignFlip:
    """Paired sign-flip (randomisation) test and its inverted interval for ``delta = sum(e) / sum(c)``.

    ``e`` (``[n]``): each unit's paired difference (variant - dense of one example, or a weighted one); ``c``
    (``[n]``, >= 0, default 1): its weight in the shift model ``e_i = delta c_i + d_i`` with each ``d_i``
    symmetric about 0 (under no difference the two models' values of an example are exchangeable, Fisher 1935).
    The statistic is ``|sum_i s_i (e_i - delta c_i)|`` over the sign vectors of ``_signs`` (all 2^n for n <= 11,
    else the identity and 2000 seeded ones), the p-value the share reaching the observed value, valid at any n
    (Phipson & Smyth 2010). The interval is every ``delta`` the test keeps at ``1 - confidence``, computed in closed
    form (``_crossings``): it holds the estimate, and excludes 0 exactly when ``p < 1 - confidence``. Bounds are
    None when fewer than about 6 units leave the test unable to reject. Raises ValueError for non-finite values
    or negative weights."""
    e = np.asarray(e, dtype=np.float64)
    c = np.ones(len(e)) if c is None else np.asarray(c, dtype=np.float64)
    if len(e) != len(c) or not len(e):
        raise ValueError(f"e, c: need the same non-zero length, got {len(e)} and {len(c)}")
    if not (np.all(np.isfinite(e)) and np.all(np.isfinite(c))) or np.any(c < 0) or c.sum() <= 0:
        raise ValueError("e, c: values must be finite and weights >= 0 with a positive sum")
    (ei, eu), (ci, cu) = _quantize(e), _quantize(c)
    signs = _signs(len(e), key, seed)
    g, alpha = len(signs), 1 - confidence
    r = _rank(alpha, g)
    ab = signs @ np.stack([ei, ci], axis=1)  # [G, 2], exact whole numbers
    big_a, big_c = float(ei.sum()), float(ci.sum())
    up = _crossings(big_a, big_c, ab[:, 0], ab[:, 1])  # above the estimate
    down = _crossings(-big_a, big_c, -ab[:, 0], ab[:, 1])  # below it (negated)
    high = float(np.sort(up)[-r]) * eu / cu + 0.0  # + 0.0: no -0.0 in a table
    low = -float(np.sort(down)[-r]) * eu / cu + 0.0
    count = g if big_a == 0 else int(np.sum((up if big_a < 0 else down) >= 0))  # vectors reaching it at 0
    estimate = float(e.sum() / c.sum())
    n = len(e)
    stderr = (math.sqrt(n / (n - 1) * float(np.sum((e - estimate * c) ** 2))) / float(c.sum())) if n > 1 else None
    finite = math.isfinite(low) and math.isfinite(high)
    return SignFlip(estimate, low if finite else None, high if finite else None, count / g, stderr, g)


def mcnemar_interval(b: int, c: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The interval of a 0/1 metric's paired difference (variant - dense) that inverts McNemar's exact test:
    with ``m = b + c`` discordant examples of ``n``, the Clopper-Pearson interval ``[pl, ph]`` of the share of
    them the variant gets right (its beta-quantile form, as ``scipy.stats.binomtest(c, m).proportion_ci(
    method="exact")`` computes it by root finding, 20 times slower), mapped to the
    difference as ``(m / n) (2 p - 1)``. The binomial at 1/2 is symmetric, so it excludes 0 exactly when
    ``mcnemar_exact(b, c) < 1 - confidence``. ``(0, 0)`` when m = 0. Raises ValueError for bad counts."""
    if b < 0 or c < 0 or n < b + c or n < 1:
        raise ValueError(f"b, c, n: need 0 <= b, c and b + c <= n, got {b}, {c}, {n}")
    m = b + c
    if m == 0:
        return 0.0, 0.0
    from scipy.stats import beta

    tail = (1 - confidence) / 2
    low = float(beta.ppf(tail, c, m - c + 1)) if c > 0 else 0.0
    high = float(beta.ppf(1 - tail, c + 1, m - c)) if c < m else 1.0
    return m / n * (2 * low - 1), m / n * (2 * high - 1)


@dataclass
class Paired:
    """Variant vs dense on the examples both scored. ``diff`` = variant - dense (on the metric's scale), ``low`` /
    ``high`` the 95 % interval that inverts the test named by ``method`` (``mcnemar``: McNemar's exact test, for
    0/1 metrics; ``sign-flip``: the paired sign-flip test, for graded means, perplexity and NLL; ``swap``: the
    paired swap test of a corpus statistic, which has no interval); ``p`` that test's two-sided p-value. ``rel`` =
    variant / dense (dense / variant when ``lower_is_better``) with ``rel_low`` / ``rel_high``, the same interval
    through the monotone map from difference to relative score. ``significant`` (the one verdict every report,
    card and finding reads): the interval of ``diff`` excludes 0, which is ``p < 1 - confidence``. For a 0/1
    metric ``b`` / ``c`` count the examples right under dense only / the variant only (``p_mcnemar`` = ``p``).
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
    iters: int = SIGN_FLIPS
    reason: str | None = None
    method: str | None = None
    p: float | None = None
    confidence: float = CONFIDENCE
    key: str = ""
    lower_is_better: bool = False
    ids: list = field(default_factory=list, repr=False)
    series: tuple | None = field(default=None, repr=False, compare=False)  # (dense, variant) on ``ids``

    @property
    def significant(self) -> bool:
        """Whether the change is beyond noise: the interval of the difference excludes 0 (equivalently the test's
        p < 1 - confidence); for a corpus statistic, which has no interval, the swap test's p."""
        if self.low is not None:
            return self.low > 0 or self.high < 0
        return self.method == "swap" and self.p is not None and self.p < 1 - self.confidence

    def at(self, confidence: float) -> Paired:
        """The same comparison with intervals at another ``confidence``."""
        if self.series is None:
            return dataclasses.replace(self, low=None, high=None, rel_low=None, rel_high=None, confidence=confidence)
        return paired(*self.series, key=self.key, lower_is_better=self.lower_is_better, seed=self.seed,
                      confidence=confidence)

    def to_dict(self) -> dict:
        """The JSON-ready fields (no per-example values)."""
        keys = ("n", "dense", "variant", "diff", "low", "high", "rel", "rel_low", "rel_high", "stderr", "b", "c",
                "p_mcnemar", "method", "p", "seed", "iters", "reason")
        return {k: getattr(self, k) for k in keys} | {"significant": self.significant}


def _relative(dense: float, x: float, lower_is_better: bool) -> float | None:
    """The relative score of a variant ``dense + x`` (``x``: the difference), None where it is not finite."""
    num, den = (dense, dense + x) if lower_is_better else (dense + x, dense)
    r = num / den if den else math.inf
    return r if math.isfinite(r) else None


def paired(dense: Series, variant: Series, key: str = "", lower_is_better: bool = False, seed: int = SEED,
           confidence: float = CONFIDENCE) -> Paired:
    """Variant vs dense over the examples both scored (matched by id, in dense's order), tested so that a change
    is called significant only by a test of the right size, and the interval printed is the inversion of that
    test (docs/statistics.md):

    - 0/1 metrics: McNemar's exact test, the interval ``mcnemar_interval``;
    - graded means: the paired sign-flip test of the per-example differences (``sign_flip`` with weights 1);
    - perplexity / NLL: the sign-flip test of each text's NLL difference with its tokens as weights (the shift
      in mean NLL per token, i.e. the log ratio of the perplexities), mapped to the metric's scale;
    - corpus statistics (distinct-n): the paired swap test (each example's two outputs swapped by the same sign
      vectors), no interval.

    ``key`` (usually the task) and ``seed`` seed the sign vectors (``SIGN_FLIPS`` of them beyond 11 examples). With
    fewer than 2 shared examples, or a non-finite value, the point values come with ``reason`` and no test."""
    have = set(variant.ids)
    ids = [i for i in dense.ids if i in have]
    d, v = dense.subset(ids), variant.subset(ids)
    n = len(ids)
    dv, vv = (d.value(), v.value()) if n else (math.nan, math.nan)
    out = Paired(n, dv, vv, vv - dv, seed=seed, ids=ids, confidence=confidence, key=key,
                 lower_is_better=lower_is_better, series=(d, v))
    if n:
        num, den = (dv, vv) if lower_is_better else (vv, dv)
        out.rel = num / den if den and math.isfinite(num / den) else None
    if n < 2:
        out.reason = TOO_FEW.format(n=n)
        return out
    if d.kind != v.kind:
        raise ValueError(f"dense, variant: series of different kinds ({d.kind}, {v.kind})")
    if d.kind == "corpus":
        return _swap(out, d, v, key, seed, confidence)
    if d.kind == "mean" and d.binary() and v.binary():
        out.b, out.c = _discordant(d.values, v.values)
        out.p = out.p_mcnemar = mcnemar_exact(out.b, out.c)
        out.low, out.high = mcnemar_interval(out.b, out.c, n, confidence)
        out.method = "mcnemar"
        out.stderr = float(np.std(v.values - d.values, ddof=1) / math.sqrt(n))
    else:
        if d.kind == "mean":
            e, c = v.values - d.values, np.ones(n)
        else:  # perplexity / nll: R = sum nll / sum tokens; e_i - delta c_i linearises R_v - R_d
            tv, td = float(np.sum(v.weights)), float(np.sum(d.weights))
            with np.errstate(invalid="ignore", over="ignore"):
                e = v.values / tv - d.values / td
            c = (v.weights / tv + d.weights / td) / 2
        if not (np.all(np.isfinite(e)) and math.isfinite(dv) and math.isfinite(vv)):
            out.reason = "a score is not finite"
            return out
        t = sign_flip(e, c, key=key, seed=seed, confidence=confidence)
        out.p, out.method = t.p, "sign-flip"
        if t.low is None:
            out.reason = f"n = {n}: too few examples for the sign-flip test to reject at {1 - confidence:.0%}"
        scale = 1.0
        if d.kind == "perplexity":  # a shift x of mean NLL per token is ppl_dense (exp(x) - 1) of perplexity
            out.low, out.high = (None, None) if t.low is None else (_ppl_change(dv, t.low), _ppl_change(dv, t.high))
            scale = vv if math.isfinite(vv) else math.nan  # d(ppl)/d(shift) at the estimate
        else:
            out.low, out.high = t.low, t.high
        out.stderr = t.stderr * scale if t.stderr is not None and math.isfinite(scale) else None
    if out.low is not None and out.rel is not None:
        ends = [_relative(dv, x, lower_is_better) for x in (out.low, out.high)]
        if None not in ends:  # the map from difference to relative score is monotone: same verdict
            out.rel_low, out.rel_high = min(ends), max(ends)
    if out.stderr is not None and dv and math.isfinite(vv) and (vv or not lower_is_better):  # delta method
        out.rel_stderr = out.stderr * (abs(dv) / vv ** 2 if lower_is_better else 1 / abs(dv))
    return out


def _discordant(dense: np.ndarray, variant: np.ndarray) -> tuple[int, int]:
    """McNemar's discordant counts of two 0/1 vectors on the same examples: ``b`` right under dense only (right ->
    wrong), ``c`` right under the variant only (wrong -> right). ``paired`` and ``flips`` both count with it."""
    return int(np.sum((dense == 1) & (variant == 0))), int(np.sum((dense == 0) & (variant == 1)))


# ----------------------------------------------------------------- flips: answers that changed, not just the mean
FLIP_THRESHOLD = 0.1  # a graded score (ROUGE-L, F1, on [0, 1]) "moved" when |variant - dense| > 0.1
FLIP_SHARE = 0.05  # accuracy hides flips when it is within noise while significantly more than 5 % of answers flip


@functools.lru_cache(maxsize=4096)
def proportion_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a rate ``k / n``: at least ``confidence`` coverage for every n and
    rate, where Wald and Wilson fall below it for the small counts flips usually are, and the same construction as
    McNemar's interval (``mcnemar_interval``). Its beta-quantile form, equal to ``scipy.stats.binomtest(k, n)
    .proportion_ci(method="exact")``, which finds the same ends by root finding 20 times slower (a report asks for
    thousands). Raises ValueError unless ``0 <= k <= n`` and ``n >= 1``."""
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"k, n: need 0 <= k <= n and n >= 1, got {k}, {n}")
    from scipy.stats import beta

    tail = (1 - confidence) / 2
    low = float(beta.ppf(tail, k, n - k + 1)) if k > 0 else 0.0
    high = float(beta.ppf(1 - tail, k + 1, n - k)) if k < n else 1.0
    return low, high


class _Counts:
    """Counts of ``n`` examples (fields or properties named by the caller) with their rates and exact intervals;
    shared by ``Flips`` and ``Changes``, which have ``n`` and ``confidence``."""

    def rate(self, which: str) -> float:
        """The count ``which`` / n; 0.0 when n = 0."""
        return getattr(self, which) / self.n if self.n else 0.0

    def interval(self, which: str) -> tuple[float, float] | None:
        """The Clopper-Pearson interval of ``rate(which)`` (``proportion_interval``); None when n = 0."""
        return proportion_interval(getattr(self, which), self.n, self.confidence) if self.n else None

    def _counts(self, *names: str) -> dict:
        """``{name, name_rate, name_low, name_high}`` for each count ``name``: the JSON-ready form."""
        out: dict = {}
        for which in names:
            ci = self.interval(which)
            out |= {which: getattr(self, which), f"{which}_rate": self.rate(which),
                    f"{which}_low": None if ci is None else ci[0], f"{which}_high": None if ci is None else ci[1]}
        return out


@dataclass(frozen=True)
class Flips(_Counts):
    """How many answers of a 0/1 metric changed between dense and a variant on the examples both scored (Dutta et
    al. 2024, "Accuracy is not all you need", arXiv 2407.09141): ``right_to_wrong`` (McNemar's ``b``, right under
    dense only) and ``wrong_to_right`` (``c``) of ``n``, their rates and the rate of either (``flipped``), each with
    its exact Clopper-Pearson interval (``proportion_interval``) at ``confidence``. The accuracy change is
    ``(wrong_to_right - right_to_wrong) / n``: equal counts keep the accuracy while changing many answers."""

    n: int
    right_to_wrong: int
    wrong_to_right: int
    dense: float | None  # the accuracies on the shared examples (None when there are none)
    variant: float | None
    confidence: float = CONFIDENCE

    @property
    def flipped(self) -> int:
        """Examples whose answer changed either way (``b + c``)."""
        return self.right_to_wrong + self.wrong_to_right

    @property
    def p(self) -> float:
        """McNemar's exact p of the accuracy change (``mcnemar_exact(right_to_wrong, wrong_to_right)``)."""
        return mcnemar_exact(self.right_to_wrong, self.wrong_to_right)

    def hidden(self, share: float = FLIP_SHARE) -> bool:
        """Whether the accuracy hides the flips: its change is within noise (McNemar's p >= 1 - confidence, so the
        paired interval holds 0) while the share of answers that flipped is significantly above ``share`` (the
        lower end of its interval exceeds it)."""
        ci = self.interval("flipped")
        return ci is not None and ci[0] > share and self.p >= 1 - self.confidence

    def to_dict(self) -> dict:
        """The JSON-ready fields: counts, rates, ``<which>_low`` / ``<which>_high`` intervals, McNemar's p."""
        out: dict = {"n": self.n, "dense": self.dense, "variant": self.variant, "interval": "clopper-pearson",
                     "confidence": self.confidence, "p_mcnemar": self.p, "hidden": self.hidden()}
        return out | self._counts("right_to_wrong", "wrong_to_right", "flipped")


def flips(dense: Series, variant: Series, confidence: float = CONFIDENCE) -> Flips:
    """The answers of a 0/1 metric that flipped between ``dense`` and ``variant`` on the examples both scored
    (matched by id as ``paired`` matches them, and counted by the same rule, so ``right_to_wrong`` / ``wrong_to_right``
    equal ``paired(dense, variant).b`` / ``.c``). Raises ValueError when either series is not a 0/1 metric
    (``Series.binary``; graded scores: ``changes``)."""
    if not (dense.binary() and variant.binary()):
        raise ValueError("dense, variant: flips count 0/1 metrics only (graded scores: stats.changes)")
    have = set(variant.ids)
    ids = [i for i in dense.ids if i in have]
    d, v = dense.subset(ids).values, variant.subset(ids).values
    b, c = _discordant(d, v)
    return Flips(len(ids), b, c, float(d.mean()) if len(ids) else None, float(v.mean()) if len(ids) else None,
                 confidence)


@dataclass(frozen=True)
class Changes(_Counts):
    """How a graded score's answers changed between dense and a variant on the examples both scored: ``changed``
    (the output text differs), ``fell`` / ``rose`` (the text differs and the score moved down / up by more than
    ``threshold``, ``FLIP_THRESHOLD`` on a 0-1 scale), of ``n``; rates with Clopper-Pearson intervals as ``Flips``."""

    n: int
    changed: int
    fell: int
    rose: int
    threshold: float = FLIP_THRESHOLD
    confidence: float = CONFIDENCE

    @property
    def moved(self) -> int:
        """Examples whose text changed and whose score moved by more than ``threshold`` either way."""
        return self.fell + self.rose

    def to_dict(self) -> dict:
        """The JSON-ready fields: counts, rates, intervals and the threshold."""
        out: dict = {"n": self.n, "threshold": self.threshold, "interval": "clopper-pearson",
                     "confidence": self.confidence}
        return out | self._counts("changed", "fell", "rose", "moved")


def changes(dense: Series, variant: Series, threshold: float = FLIP_THRESHOLD,
            confidence: float = CONFIDENCE) -> Changes:
    """The examples of a graded metric whose output text changed, and of those the ones whose score moved by more
    than ``threshold`` (``|variant - dense| > threshold``), on the examples both scored (matched by id). Both
    series need their outputs (``Series.texts``, which ``series`` fills from the samples); raises ValueError
    otherwise or for a series that is not a per-example mean."""
    if dense.kind != "mean" or variant.kind != "mean" or dense.texts is None or variant.texts is None:
        raise ValueError("dense, variant: changes need per-example scores with their output texts")
    have = set(variant.ids)
    ids = [i for i in dense.ids if i in have]
    d, v = dense.subset(ids), variant.subset(ids)
    text = np.array([a != b for a, b in zip(d.texts, v.texts)], dtype=bool)
    delta = v.values - d.values
    return Changes(len(ids), int(text.sum()), int(np.sum(text & (delta < -threshold))),
                   int(np.sum(text & (delta > threshold))), threshold, confidence)


@dataclass(frozen=True)
class Recognition:
    """One model's multiple-choice answers under both protocols ("Benchmark Illusion", arXiv 2606.17609): the 2x2
    table of right by log-likelihood (``loglik``) and by generation (``generate``) on the questions scored under
    both: ``both``, ``loglik_only`` ("knows it but cannot say it"), ``generate_only``, ``neither`` (sum ``n``);
    ``ranks``: how many questions put the right option at rank 1, 2, ... under log-likelihood (1 = the highest),
    over the questions whose rank is recorded (``rank_loglik``; empty when none is)."""

    n: int
    both: int
    loglik_only: int
    generate_only: int
    neither: int
    ranks: dict = field(default_factory=dict)

    def mean_rank(self) -> float | None:
        """The mean rank of the right option under log-likelihood; None without recorded ranks."""
        total = sum(self.ranks.values())
        return sum(r * k for r, k in self.ranks.items()) / total if total else None

    def to_dict(self) -> dict:
        """The JSON-ready fields (``ranks`` keyed by the rank as a string)."""
        return {"n": self.n, "both": self.both, "loglik_only": self.loglik_only,
                "generate_only": self.generate_only, "neither": self.neither,
                "ranks": {str(r): k for r, k in sorted(self.ranks.items())}, "mean_rank": self.mean_rank()}


def recognition(samples: list[dict]) -> Recognition | None:
    """The 2x2 table of ``Recognition`` from mcq-reasoning's sample records (``score_loglik``, ``score_generate``
    and ``rank_loglik`` of ``--mcq-protocols loglik generate``), over the questions scored under both (no
    ``skipped``, both scores 0 or 1); None when no record holds both."""
    cells = {(1, 1): 0, (1, 0): 0, (0, 1): 0, (0, 0): 0}
    ranks: dict[int, int] = {}
    for s in samples:
        a, b = s.get("score_loglik"), s.get("score_generate")
        if "skipped" in s or a not in (0, 1) or b not in (0, 1) or isinstance(a, bool) or isinstance(b, bool):
            continue
        cells[int(a), int(b)] += 1
        r = s.get("rank_loglik")
        if isinstance(r, int) and not isinstance(r, bool) and r >= 1:
            ranks[r] = ranks.get(r, 0) + 1
    n = sum(cells.values())
    if not n:
        return None
    return Recognition(n, cells[1, 1], cells[1, 0], cells[0, 1], cells[0, 0], dict(sorted(ranks.items())))


def _ppl_change(dense_ppl: float, shift: float) -> float:
    """The perplexity difference ``ppl_dense (exp(shift) - 1)`` of a shift in mean NLL per token (increasing, so an
    interval keeps its order and its side of 0)."""
    return dense_ppl * math.expm1(shift) if shift < 700 else math.inf


def _swap(out: Paired, d: Series, v: Series, key: str, seed: int, confidence: float) -> Paired:
    """A corpus statistic: the paired swap test (each example's two outputs exchanged under the sign vectors of
    ``_signs``; p = the share of them whose |variant - dense| reaches the observed one). No interval: the
    statistic of a whole set of outputs has no per-example shift to invert."""
    n = out.n
    both = Series(list(range(2 * n)), np.zeros(2 * n), "corpus", texts=list(d.texts) + list(v.texts),
                  corpus=d.corpus)
    flip = _signs(n, key, seed) < 0  # [G, n]: True where the two outputs swap
    own = np.arange(n)[None, :]
    dense_idx, variant_idx = np.where(flip, own + n, own), np.where(flip, own, own + n)
    stats_ = both.stat(variant_idx) - both.stat(dense_idx)  # row 0 is the observed difference
    observed = abs(float(stats_[0]))
    out.p = float(np.mean(np.abs(stats_) >= observed - 1e-12 * max(observed, 1.0)))
    out.method = "swap"
    out.stderr = float(np.std(stats_, ddof=1))  # the spread of the difference under no difference
    out.reason = "a corpus statistic: the swap test gives the verdict, there is no interval to invert"
    return out


@dataclass(frozen=True)
class Interval:
    """A combined statistic (e.g. the share of dense knowledge kept) with the interval of the test behind it
    (``low`` / ``high`` None: no interval, ``reason``); ``p`` that test's p-value where there is one."""

    value: float
    low: float | None
    high: float | None
    stderr: float | None
    n: int
    reason: str | None = None
    p: float | None = None
    method: str | None = None

    def excludes(self, x: float) -> bool:
        """Whether the interval lies wholly above or below ``x``."""
        return self.low is not None and (self.low > x or self.high < x)


def _units(pairs: list[Paired], other: list[Paired] | None = None) -> tuple[np.ndarray, np.ndarray, int] | str:
    """The sign-flip units of the mean relative score over ``pairs`` (each task counted once): example i of task
    t gives ``e_i = (x_i - y_i) / (T n_t dense_t)`` and ``c_i = 1 / (T n_t)``, where x is the variant and y dense,
    or with ``other`` x the variant of ``pairs`` and y that of ``other`` on the examples both scored. A string
    says why there are none."""
    es, cs = [], []
    for k, p in enumerate(pairs):
        if p.series is None or p.n < 1 or p.series[0].kind != "mean" or p.lower_is_better or not p.dense:
            return p.reason or "no per-example values of a mean metric"
        d, v = p.series
        if other is not None:
            q = other[k]
            if q.series is None or q.series[0].kind != "mean":
                return q.reason or "no per-example values of a mean metric"
            shared = set(q.ids)
            ids = [i for i in p.ids if i in shared]
            if not ids:
                return "no example scored by both"
            x, y = v.subset(ids).values, q.series[1].subset(ids).values
        else:
            x, y = v.values, d.values
        w = 1 / (len(pairs) * len(x))
        es.append((x - y) * w / p.dense), cs.append(np.full(len(x), w))
    return np.concatenate(es), np.concatenate(cs), min(len(e) for e in es)


def relative_mean(pairs: list[Paired], confidence: float = CONFIDENCE) -> Interval:
    """The mean relative score (variant / dense) over several paired comparisons of mean metrics on independent
    examples (the share of dense knowledge kept over the knowledge tasks), with the sign-flip test of "no change
    on any example" inverted as an interval (``sign_flip`` on the units of ``_units``: a shift ``delta`` of the
    relative score). One comparison gives its own relative interval (McNemar's for a 0/1 metric), so a finding
    on one task agrees with that task's verdict. ``n``: the fewest examples of a task."""
    value = sum(p.rel for p in pairs) / len(pairs) if all(p.rel is not None for p in pairs) else math.nan
    n = min((p.n for p in pairs), default=0)
    if len(pairs) == 1:
        p = pairs[0]
        return Interval(value, p.rel_low, p.rel_high, p.rel_stderr, n, p.reason, p.p, p.method)
    units = _units(pairs)
    if isinstance(units, str):
        return Interval(value, None, None, None, n, units)
    e, c, n = units
    t = sign_flip(e, c, key="relative_mean:" + ",".join(p.key for p in pairs), seed=pairs[0].seed,
                  confidence=confidence)
    low, high = (None, None) if t.low is None else (1 + t.low, 1 + t.high)
    return Interval(1 + t.estimate, low, high, t.stderr, n, None if low is not None else "too few examples", t.p,
                    "sign-flip")


def relative_mean_difference(a: list[Paired], b: list[Paired], confidence: float = CONFIDENCE) -> Interval:
    """The mean relative score of one variant minus another's (``a[k]`` and ``b[k]``: each against the same dense
    on the same task), on the examples both scored, with the sign-flip test of "the two variants are
    exchangeable on every example" (their two values of an example swapped) inverted as an interval."""
    n = min((p.n for p in a + b), default=0)
    units = _units(a, b)
    if isinstance(units, str):
        va = sum(p.rel for p in a) / len(a) if all(p.rel is not None for p in a) else math.nan
        vb = sum(p.rel for p in b) / len(b) if all(p.rel is not None for p in b) else math.nan
        return Interval(va - vb, None, None, None, n, units)
    e, c, n = units
    t = sign_flip(e, c, key="relative_mean_difference:" + ",".join(p.key for p in a), seed=a[0].seed,
                  confidence=confidence)
    return Interval(t.estimate, t.low, t.high, t.stderr, n, None if t.low is not None else "too few examples", t.p,
                    "sign-flip")


def relative_difference(a: Paired, b: Paired, confidence: float = CONFIDENCE) -> Interval:
    """``a.rel - b.rel`` for two comparisons on independent examples (two tasks of one variant), with the interval
    ``[a_low - b_high, a_high - b_low]`` of their relative intervals each at ``sqrt(confidence)``: both cover at
    once with probability ``>= confidence``, so it covers the difference at least as often (conservative; each
    part is the inversion of its own test of the right size). No p-value."""
    value = a.rel - b.rel if a.rel is not None and b.rel is not None else math.nan
    n = min(a.n, b.n)
    x, y = a.at(math.sqrt(confidence)), b.at(math.sqrt(confidence))
    if x.rel_low is None or y.rel_low is None:
        return Interval(value, None, None, None, n, x.reason or y.reason or "no interval")
    se = math.hypot(x.rel_stderr, y.rel_stderr) if x.rel_stderr is not None and y.rel_stderr is not None else None
    return Interval(value, x.rel_low - y.rel_high, x.rel_high - y.rel_low, se, n, method="intervals")
