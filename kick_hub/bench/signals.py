"""Which signal tracks knowledge: across a sweep's compressed variants, how well each cheap, task-independent
measurement of the damage ranks the variants by the knowledge they lost (issue 35; LLM-KICK's claim that perplexity
hides what compression destroys; "Displacement != Direction", arXiv 2606.19558, for KL across a cohort of quants).

Per variant (dense left out: every signal is measured from it), from ``bench.analysis.table_data``'s rows:

- knowledge retained: ``analysis.knowledge`` (the mean share of dense kept over the knowledge tasks the variant was
  scored on); knowledge loss is ``1 - knowledge retained``;
- the signals (``SIGNALS``), each larger = further from dense: ``ppl_ratio`` (the distribution fidelity's
  ``ppl_ratio``, ``row["fidelity"]``, variant / dense over the same positions; without it the variant's perplexity /
  dense's),
  ``kl_mean`` (mean per-token KL(dense || variant), nats, ``scoring.fidelity``), ``top1_disagreement``
  (``1 - top1_agreement``) and ``flip_rate`` (``stats.flips`` of each knowledge task's headline 0/1 metric: the share
  of answers that changed either way, averaged over the knowledge tasks as knowledge retained averages them; only
  when every one of the variant's knowledge tasks has its flips).

Each signal's Spearman rank correlation with knowledge loss (``scipy.stats.spearmanr``, ties at their average rank)
over the variants that have both, with a 95 % percentile bootstrap interval: ``BOOTSTRAP_ITERS`` resamples of the
variants with replacement from ``numpy.random.default_rng(SEED)`` (the same resamples for every signal measured on
the same variants), each resample's rank correlation computed alike; a resample in which either variable is constant
(no ranking) is dropped. Coverage measured on bivariate normal data (``tests/test_signals.py``): at 10-30 variants
the interval covers the true rho in 95-98 % of samples (4,000 samples each: 95 % at rho 0, 96-97 % at rho 0.48,
97-98 % at rho 0.79), so it is never too narrow and slightly wide for strong correlations (resampling duplicates
variants, and the ties this makes widen the spread); the paired difference's interval excludes 0 in 3.7 % of samples
when two signals are equally good (``difference``). Below 8 variants the percentile interval is too narrow for a
strong correlation (1,000 samples at rho 0.89: 60 % coverage at 4 variants, 77 % at 5, 87 % at 6, 94 % at 7, 97 % at
8), so fewer than ``MIN_VARIANTS`` = 8 variants, or a constant signal or knowledge, give no number, the reason
instead (``Correlation.reason``).

The claim "perplexity predicts knowledge loss worst" compares each other signal's rho with the perplexity ratio's
on the variants that have both: the difference ``rho_signal - rho_ppl`` with the percentile interval of the same
resamples (paired: both correlations of a resample use the same variants). Confirmed when every difference's
interval lies above 0, not confirmed when one lies below 0, inconclusive otherwise (``finding``). The best signal is
the one with the largest rho; whether its interval overlaps the others' is reported beside it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from kick_hub.io import format_number
from kick_hub.scoring.stats import BOOTSTRAP_ITERS, CONFIDENCE, SEED

# signal -> (short name, what it is): every signal is larger the further a variant is from dense
SIGNALS: dict[str, tuple[str, str]] = {
    "ppl_ratio": ("perplexity ratio", "perplexity ratio (variant / dense)"),
    "kl_mean": ("KL mean", "mean per-token KL(dense || variant), nats"),
    "top1_disagreement": ("1 - top-1 agreement", "share of positions whose most likely token differs from dense's"),
    "flip_rate": ("flip rate", "share of knowledge-task answers that flipped (right <-> wrong)"),
}
REFERENCE = "ppl_ratio"  # the signal LLM-KICK says tracks knowledge worst
MIN_VARIANTS = 8  # below, the bootstrap interval is too narrow (coverage by simulation, module docstring)
TOO_FEW = "too few variants (n = {n}; a rank correlation needs at least {m})"
CLAIM = ("Perplexity tracks knowledge loss worst: across the variants, the perplexity ratio ranks them by knowledge "
         "loss less well than KL, top-1 agreement or flips")


@dataclass(frozen=True)
class Correlation:
    """A Spearman rank correlation over ``n`` variants (``labels``) with its percentile bootstrap interval
    (``low``, ``high``; None with ``reason`` when there is none); ``rho`` None (and ``reason``) when there is no
    number at all (too few variants, a constant variable)."""

    n: int
    rho: float | None
    low: float | None = None
    high: float | None = None
    reason: str | None = None
    labels: tuple[str, ...] = ()

    def text(self) -> str:
        """``0.83 [0.41, 0.97]`` or the reason."""
        if self.rho is None:
            return self.reason or "-"
        ci = f" [{self.low:.2f}, {self.high:.2f}]" if self.low is not None else f" (no interval: {self.reason})"
        return f"{self.rho:.2f}{ci}"

    def to_dict(self) -> dict:
        """The JSON-ready fields."""
        return {"n": self.n, "rho": self.rho, "low": self.low, "high": self.high, "reason": self.reason,
                "variants": list(self.labels)}


def _ranks_corr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise Spearman correlation of ``x`` and ``y`` (``[B, n]``): Pearson's r of the average ranks; NaN in a
    row where either variable is constant."""
    from scipy.stats import rankdata

    rx, ry = rankdata(x, axis=1), rankdata(y, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)


def _resamples(n: int, iters: int, seed: int) -> np.ndarray:
    """``[iters, n]`` indices of the variants drawn with replacement (``numpy.random.default_rng(seed)``)."""
    return np.random.default_rng(seed).integers(0, n, size=(iters, n))


def _percentile(reps: np.ndarray, confidence: float) -> tuple[float, float] | None:
    """The percentile interval of the finite replicates; None when fewer than half of them are (a near-constant
    variable)."""
    finite = reps[np.isfinite(reps)]
    if len(finite) < max(2, len(reps) / 2):
        return None
    a = (1 - confidence) / 2
    lo, hi = np.quantile(finite, [a, 1 - a])
    return float(lo), float(hi)


def _constant(v: np.ndarray) -> bool:
    return len(np.unique(v)) < 2


def spearman(x: Sequence[float], y: Sequence[float], labels: Sequence[str] = (), iters: int = BOOTSTRAP_ITERS,
             seed: int = SEED, confidence: float = CONFIDENCE) -> Correlation:
    """The Spearman rank correlation of ``x`` and ``y`` (``[n]`` each, paired by position; ``inf`` ranks above
    every number, NaN is not allowed) with its percentile bootstrap interval over the pairs (module docstring).
    Fewer than ``MIN_VARIANTS`` pairs or a constant variable: ``rho`` None and the reason. Raises ValueError for
    sequences of different lengths or a NaN."""
    from scipy.stats import spearmanr

    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise ValueError(f"x, y: need two sequences of one length, got {xa.shape} and {ya.shape}")
    if np.isnan(xa).any() or np.isnan(ya).any():
        raise ValueError("x, y: NaN has no rank; leave such variants out")
    n, labels = len(xa), tuple(labels)
    if n < MIN_VARIANTS:
        return Correlation(n, None, reason=TOO_FEW.format(n=n, m=MIN_VARIANTS), labels=labels)
    if _constant(xa) or _constant(ya):
        which = "the signal" if _constant(xa) else "knowledge"
        return Correlation(n, None, reason=f"{which} is the same for every variant: no ranking", labels=labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = float(spearmanr(xa, ya).statistic)
    idx = _resamples(n, iters, seed)
    ci = _percentile(_ranks_corr(xa[idx], ya[idx]), confidence)
    if ci is None:
        return Correlation(n, rho, reason="most resamples had a constant variable", labels=labels)
    return Correlation(n, rho, ci[0], ci[1], labels=labels)


def difference(a: Sequence[float], b: Sequence[float], y: Sequence[float], iters: int = BOOTSTRAP_ITERS,
               seed: int = SEED, confidence: float = CONFIDENCE) -> Correlation:
    """``rho(a, y) - rho(b, y)`` over the same ``n`` variants, with the percentile interval of the differences on
    the same resamples (paired). ``rho`` None and the reason for fewer than ``MIN_VARIANTS`` variants or a constant
    variable. Raises ValueError as ``spearman``."""
    ra, rb = spearman(a, y, iters=1, seed=seed), spearman(b, y, iters=1, seed=seed)
    if ra.rho is None or rb.rho is None:
        return Correlation(ra.n, None, reason=ra.reason if ra.rho is None else rb.reason)
    aa, ba, ya = (np.asarray(v, dtype=np.float64) for v in (a, b, y))
    idx = _resamples(len(ya), iters, seed)
    ci = _percentile(_ranks_corr(aa[idx], ya[idx]) - _ranks_corr(ba[idx], ya[idx]), confidence)
    if ci is None:
        return Correlation(ra.n, ra.rho - rb.rho, reason="most resamples had a constant variable")
    return Correlation(ra.n, ra.rho - rb.rho, ci[0], ci[1])


# ------------------------------------------------------------------ per-variant values
def _number(x) -> float | None:
    """A stored score as a float (``inf`` kept: it ranks last), None when absent or NaN."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or math.isnan(x):
        return None
    return float(x)


def flip_rate(row: dict) -> float | None:
    """The share of a variant's knowledge-task answers that flipped against dense (``row["flips"]``: each knowledge
    task's headline 0/1 metric, ``stats.Flips.rate("flipped")``), averaged over the knowledge tasks of its knowledge
    retained; None unless every one of them has its flips on at least one shared example."""
    from kick_hub.bench.analysis import HEADLINE, KNOWLEDGE

    names = [t for t in KNOWLEDGE if t in row.get("rel", {})]
    found = [row.get("flips", {}).get(t, {}).get(HEADLINE[t]) for t in names]
    if not names or any(f is None or not f.n for f in found):
        return None
    return sum(f.rate("flipped") for f in found) / len(found)


def values(row: dict, dense: dict | None) -> dict[str, float]:
    """Signal -> value of one variant's ``table_data`` row (module docstring: ``row["fidelity"]``, ``row["abs"]``,
    ``row["flips"]``); ``dense``: dense's row (the perplexity ratio when the fidelity's ``ppl_ratio`` is not
    stored). Signals the row has no number for are left out."""
    out: dict[str, float] = {}
    fid = row.get("fidelity", {})
    ratio = _number(fid.get("ppl_ratio"))
    if ratio is None and dense is not None:
        v, d = _number(row.get("abs", {}).get("perplexity")), _number(dense.get("abs", {}).get("perplexity"))
        if v is not None and d is not None and math.isfinite(d) and d > 0:
            ratio = v / d
    if ratio is not None:
        out["ppl_ratio"] = ratio
    if (kl := _number(fid.get("kl_mean"))) is not None:
        out["kl_mean"] = kl
    if (top1 := _number(fid.get("top1_agreement"))) is not None:
        out["top1_disagreement"] = 1.0 - top1
    if (flips := flip_rate(row)) is not None:
        out["flip_rate"] = flips
    return out


# ------------------------------------------------------------------ the analysis
@dataclass
class Analysis:
    """The sweep's signals against knowledge: ``knowledge`` (variant -> knowledge retained), ``methods`` (variant ->
    method), ``values`` (signal -> variant -> value), ``correlations`` (signal -> ``Correlation`` of the signal
    with knowledge loss), ``versus`` (signal -> ``difference`` of its rho and the perplexity ratio's, same
    variants), ``best`` (the signal with the largest rho, None without any) and ``overlaps`` (the signals whose
    interval overlaps the best one's)."""

    knowledge: dict[str, float] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, float]] = field(default_factory=dict)
    correlations: dict[str, Correlation] = field(default_factory=dict)
    versus: dict[str, Correlation] = field(default_factory=dict)
    best: str | None = None
    overlaps: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The JSON-ready analysis (findings.json's ``signals``), with the method in words."""
        return {"method": "Spearman rank correlation of each signal with knowledge loss (1 - knowledge retained) "
                          f"over the compressed variants; {CONFIDENCE:.0%} percentile bootstrap interval, "
                          f"{BOOTSTRAP_ITERS} resamples of the variants (seed {SEED}); at least {MIN_VARIANTS} "
                          "variants",
                "signals": {s: SIGNALS[s][1] for s in SIGNALS},
                "knowledge_retained": self.knowledge,
                "values": self.values,
                "correlations": {s: c.to_dict() for s, c in self.correlations.items()},
                "minus_perplexity": {s: c.to_dict() for s, c in self.versus.items()},
                "best": self.best, "best_overlaps": self.overlaps}


def analyse(rows: list[dict], iters: int = BOOTSTRAP_ITERS, seed: int = SEED) -> Analysis:
    """The signals of ``rows`` (``bench.analysis.table_data``'s; dense's row is the reference, not a point) against
    knowledge loss: every ``Correlation`` and the comparison with the perplexity ratio (module docstring)."""
    from kick_hub.bench.analysis import knowledge

    dense = next((r for r in rows if r.get("method") == "dense"), None)
    out = Analysis()
    for r in rows:
        if r.get("method") == "dense" or "rel" not in r:
            continue
        k = knowledge(r)
        if k is None:
            continue
        out.knowledge[r["label"]] = k
        out.methods[r["label"]] = r.get("method") or "?"
        for s, v in values(r, dense).items():
            out.values.setdefault(s, {})[r["label"]] = v
    for s in SIGNALS:
        per = out.values.get(s, {})
        if not per:
            continue
        labels = list(per)
        out.correlations[s] = spearman([per[v] for v in labels], [1 - out.knowledge[v] for v in labels], labels,
                                       iters, seed)
    ref = out.values.get(REFERENCE, {})
    for s, per in out.values.items():
        if s == REFERENCE or not ref or out.correlations[s].rho is None:
            continue
        both = [v for v in per if v in ref]
        out.versus[s] = difference([per[v] for v in both], [ref[v] for v in both],
                                   [1 - out.knowledge[v] for v in both], iters, seed)
    measured = {s: c for s, c in out.correlations.items() if c.rho is not None}
    if measured:
        out.best = max(measured, key=lambda s: (measured[s].rho, -list(SIGNALS).index(s)))
        b = measured[out.best]
        out.overlaps = [s for s, c in measured.items() if s != out.best and c.low is not None and b.low is not None
                        and c.high >= b.low and b.high >= c.low]
    return out


def _name(signal: str) -> str:
    return SIGNALS[signal][0]


def finding(a: Analysis) -> dict:
    """The findings entry of "perplexity tracks knowledge loss worst" (``analysis.findings``' shape: claim, verdict,
    evidence; ``n`` with an inconclusive verdict): which signal predicts knowledge loss best in this sweep (largest
    rho, and whether its interval overlaps the others'), then each signal's rho minus the perplexity ratio's with
    its interval. Confirmed / not confirmed / inconclusive (within noise at n = variants) / not measured."""
    evidence = []
    if a.best is not None:
        b = a.correlations[a.best]
        others = [s for s, c in a.correlations.items() if s != a.best and c.rho is not None]
        apart = [s for s in others if s not in a.overlaps]
        overlap = ("its interval overlaps " + ", ".join(f"{_name(s)}'s" for s in a.overlaps) if a.overlaps else
                   "its interval overlaps no other's" if others else "the only signal measured")
        if a.overlaps and apart:
            overlap += " and lies apart from " + ", ".join(f"{_name(s)}'s" for s in apart)
        evidence.append(f"best predictor of knowledge loss in this sweep: {_name(a.best)} (Spearman rho "
                        f"{b.text()} over {b.n} variants); {overlap}")
    for s, c in a.correlations.items():
        if s != a.best:
            evidence.append(f"{_name(s)}: rho {c.text()}" + (f" over {c.n} variants" if c.rho is not None else ""))
    ok: list[bool | None] = []
    ns = []
    for s, d in a.versus.items():
        if d.rho is None:
            continue
        evidence.append(f"{_name(s)} - perplexity ratio: {d.rho:+.2f}"
                        + (f" [{d.low:+.2f}, {d.high:+.2f}]" if d.low is not None else f" (no interval: {d.reason})"))
        if d.low is None:
            ok.append(None)
        else:
            ok.append(True if d.low > 0 else False if d.high < 0 else None)
        ns.append(d.n)
    ref = a.correlations.get(REFERENCE)
    if ref is None or ref.rho is None or not ok:
        verdict = "not measured"
        if ref is None or ref.rho is None:
            evidence.append(f"perplexity ratio: {ref.reason if ref is not None else 'not measured'}")
    elif any(o is False for o in ok):
        verdict = "not confirmed"
    elif all(o is True for o in ok):
        verdict = "confirmed"
    else:
        verdict = f"inconclusive (within noise at n = {min(ns)} variants)"
    out = {"claim": CLAIM, "verdict": verdict, "evidence": evidence}
    if verdict.startswith("inconclusive"):
        out["n"] = min(ns)
    return out


def sections(a: Analysis) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """The report's tables (``report.sections``' shape): each signal's rho with knowledge loss and its difference
    from the perplexity ratio's, then every variant's knowledge retained and signals. Empty when no variant has a
    signal."""
    if not a.correlations:
        return []
    corr = [[_name(s), SIGNALS[s][1], str(c.n), c.text(),
             "-" if s == REFERENCE else a.versus[s].text() if s in a.versus else "-"]
            for s, c in a.correlations.items()]
    note = (f"Spearman rank correlation of each signal with knowledge loss (1 - knowledge retained, the mean share "
            f"of dense kept over the knowledge tasks) across the compressed variants, with its {CONFIDENCE:.0%} "
            f"percentile bootstrap interval ({BOOTSTRAP_ITERS} resamples of the variants, seed {SEED}); 1 = the "
            f"signal ranks the variants exactly by the knowledge they lost. Every signal grows with the distance "
            f"from dense. The last column: the signal's rho minus the perplexity ratio's on the same variants and "
            f"resamples (above 0: it tracks knowledge better). Fewer than {MIN_VARIANTS} variants: no number.")
    signals = [s for s in SIGNALS if s in a.values]
    per = [[v, f"{k:.3f}"] + [format_number(a.values[s].get(v), ".3g") if v in a.values[s] else "-"
                              for s in signals] for v, k in a.knowledge.items()]
    return [("Which signal tracks knowledge", note,
             ["signal", "what", "variants", "Spearman rho [95 % CI]", "rho - perplexity ratio's [95 % CI]"], corr),
            ("Signals per variant", "knowledge retained (share of dense kept over the knowledge tasks) and each "
             "signal, per compressed variant.", ["variant", "knowledge retained", *[_name(s) for s in signals]],
             per)]


def figure(a: Analysis):
    """Knowledge retained (y) against each signal (x), one panel per signal with values for at least 2 variants,
    a marker per variant coloured by method (matplotlib's tab10 in sorted method order), the panel's title giving
    rho and its interval (or why there is none); an infinite value is left out of its panel and counted in the
    x-axis label. None when no signal has 2 variants. The caller saves and closes it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kick_hub.bench.plots import TAB10

    shown = [s for s in SIGNALS if len(a.values.get(s, {})) >= 2]
    if not shown:
        return None
    colours = {m: TAB10[i % len(TAB10)] for i, m in enumerate(sorted(set(a.methods.values())))}
    fig, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 4.2), sharey=True, squeeze=False,
                             layout="constrained")
    for ax, s in zip(axes[0], shown):
        per = a.values[s]
        for m, colour in colours.items():
            pts = [(x, a.knowledge[v]) for v, x in per.items() if a.methods[v] == m and math.isfinite(x)]
            if pts:
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=28, color=colour, label=m)
        off = sum(1 for x in per.values() if not math.isfinite(x))
        ax.set_xlabel(SIGNALS[s][1] + (f"\n({off} variant{'s' * (off > 1)} at ∞ not shown)" if off else ""),
                      fontsize=8)
        c = a.correlations[s]
        ax.set_title(f"{_name(s)}\nrho = {c.text()}" + (f", n = {c.n}" if c.rho is not None else ""), fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("knowledge retained (share of dense)")
    handles, labels = {}, []
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    fig.legend([handles[lab] for lab in labels], labels, loc="outside lower center", ncol=min(len(labels), 4),
               fontsize=8, frameon=False)
    fig.suptitle(f"Knowledge retained vs each signal (rho: Spearman with knowledge loss, {CONFIDENCE:.0%} "
                 f"bootstrap interval)", fontsize=10)
    return fig
