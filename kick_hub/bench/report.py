"""The sweep report: tables (absolute and relative to dense), plots, and findings computed from the numbers.

Relative score = variant / dense for every task, except perplexity, where it is dense / variant: 1.0 means "as good
as dense" on every axis and lower means worse, so perplexity sits on the same relative axis as the tasks.

Noise (``kick_hub.scoring.stats``, docs/statistics.md): every score is shown ± its standard error; every variant is
compared with dense on the same examples by a test of the right size (McNemar's exact test for 0/1 metrics, the
paired sign-flip test for graded scores and perplexity), with the 95 % interval that inverts that test, so a change
is marked significant exactly when its interval excludes 0 (``stats.Paired.significant``, the one verdict every
table, plot, finding and card reads), and each LLM-KICK claim is confirmed, not confirmed, or inconclusive within
noise (with the examples per task that would resolve it). The plots show the intervals as
bands and error bars. A store without per-example records (or whose records do not give its stored score) falls
back to the point values and the 5 % rule.

Non-finite scores (a broken model's perplexity is ``inf``): a relative score is always a finite number or absent. A
variant whose perplexity is infinite against a finite dense one keeps 0.0 of dense; when dense itself (or a score) is
not a finite number there is no relative score, and the tables say why. Tables show ``∞`` / ``NaN``; every JSON file
is strict JSON (``kick_hub.io.dumps``).
"""

from __future__ import annotations

import dataclasses
import html
import math
from pathlib import Path

from kick_hub import tasks
from kick_hub.bench.store import Store
from kick_hub.io import atomic_write_text, format_number, loads, public_name, write_json
from kick_hub.scoring import stats
from kick_hub.scoring.judge import usage_from_samples

# headline metric, knowledge flag and direction come from the task specs (kick_hub.tasks.specs)
HEADLINE = {name: spec.metric for name, spec in tasks.SPECS.items()}  # task id -> its headline metric
KNOWLEDGE = tuple(name for name, spec in tasks.SPECS.items() if spec.knowledge)
LOSS = 0.05  # "loses more than 5 % relative to dense"
# "knowledge collapsed while perplexity did not": knowledge below 80 % of dense, perplexity within 10 % of dense
COLLAPSE_KNOWLEDGE, COLLAPSE_PERPLEXITY = 0.80, 0.90
JUDGED = tuple(name for name, spec in tasks.SPECS.items() if spec.judge_prompt)  # tasks an LLM judge may score


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def relative(task: str, value: float, dense: float) -> float | None:
    """Share of dense kept, always a finite number; None when there is none: dense scored 0 (nothing to keep), or
    dense or the variant is not a finite number (see ``no_relative``)."""
    if tasks.SPECS[task].lower_is_better:
        if _finite(dense) and dense > 0 and value == math.inf:
            return 0.0  # an infinite loss keeps nothing of a finite dense one
        rel = dense / value if _finite(value) and _finite(dense) and value > 0 else None
    else:
        rel = value / dense if _finite(value) and _finite(dense) and dense else None
    return rel if rel is None or math.isfinite(rel) else None


def no_relative(value: float | None, dense: float | None) -> str:
    """Why a variant has no relative score for a task (``relative`` gave None)."""
    if not _finite(dense):
        return f"dense {format_number(dense)}"
    return "dense scored 0" if dense == 0 else "not comparable"


def table_data(store: Store) -> tuple[list[dict], dict]:
    """Rows (one per variant) and the dense scores (task -> headline value).

    Each row holds label, method, sparsity, pattern, bits; ``abs`` / ``rel`` per task (the headline metric, and
    its share of dense); ``invalid`` (task -> inputs whose logits were NaN / inf: the task has no score, see
    ``kick_hub.evaluation.mark_invalid``); ``n`` (examples scored); ``se`` (standard error: the stored ``<metric>_stderr``, else
    computed from the stored samples) and ``se_reason`` (why a task has none, e.g. n < 2); and ``paired`` (task ->
    ``stats.Paired``, the variant vs dense on the same examples; dense's row and tasks without per-example records
    have none); ``judge`` (judged task -> ``scoring.judge.usage_from_samples`` of its records); ``flips`` (task ->
    0/1 metric -> ``stats.Flips`` against dense) and ``changes`` (task -> graded metric -> ``stats.Changes``) for
    every per-example metric whose records give its stored score (dense's row: empty); ``recognition``
    (``mcq-reasoning`` -> ``stats.Recognition`` when it was scored under both protocols, dense included)."""
    scores = store.scores()
    if "dense" not in scores:
        raise ValueError("report: the store has no dense baseline yet")
    dense = {t: scores["dense"][t][m] for t, m in HEADLINE.items() if m in scores["dense"].get(t, {})}
    series = {}  # (label, task) -> per-example headline values
    metrics = {}  # (label, task) -> metric -> per-example values of every metric the records give (flips)
    rows = []
    for v in store.variants():
        s = scores.get(v["label"], {})
        row = {k: v[k] for k in ("label", "method", "sparsity", "pattern", "bits")}
        if v["method"] == "external" and v["manifest"]:  # an external checkpoint: what it is (external.provenance)
            row["provenance"] = loads(v["manifest"])
        row["abs"] = {t: s[t][m] for t, m in HEADLINE.items() if t in s and m in s[t]}
        # tasks with no score because the model's logits were NaN / inf (kick_hub.evaluation.mark_invalid)
        row["invalid"] = {t: int(x["non_finite_logits"]) for t, x in s.items() if _finite(x.get("non_finite_logits"))
                          and x["non_finite_logits"] > 0}
        rel = {t: relative(t, x, dense[t]) for t, x in row["abs"].items() if t in dense}
        row["rel"] = {t: r for t, r in rel.items() if r is not None}
        row["n"] = {t: int(s[t]["n"]) for t in row["abs"] if _finite(s[t].get("n"))}
        row["se"], row["se_reason"] = {}, {}
        row["recognition"] = {}
        for t in row["abs"]:
            records = store.samples(v["label"], t)
            x = stats.series(t, HEADLINE[t], records)
            if x is not None and not _reproduces(x.value(), row["abs"][t]):
                x = None  # records that do not give the stored score are not its examples: nothing to pair
            series[v["label"], t] = x
            metrics[v["label"], t] = {m: y for m in stats.FIELDS.get(t, {}) if _finite(s[t].get(m))
                                      for y in [stats.series(t, m, records)]
                                      if y is not None and _reproduces(y.value(), s[t][m])}
            if t == "mcq-reasoning":
                rec = stats.recognition(records)
                if rec is not None:
                    row["recognition"][t] = rec
            stored = s[t].get(f"{HEADLINE[t]}_stderr")
            if _finite(stored):
                row["se"][t] = stored
            elif series[v["label"], t] is not None:
                e = stats.estimate(series[v["label"], t])
                if e.stderr is not None:
                    row["se"][t] = e.stderr
                else:
                    row["se_reason"][t] = e.reason
            elif row["n"].get(t, 2) < 2:
                row["se_reason"][t] = stats.TOO_FEW.format(n=row["n"][t])
        row["judge"] = {t: u for t in JUDGED if t in s  # what judging cost (scoring.judge.usage_from_samples)
                        for u in [usage_from_samples(store.samples(v["label"], t))] if u is not None}
        row["fidelity"] = fidelity_scores(s)  # against dense's distributions on the perplexity texts
        rows.append(row)
    for row in rows:
        row["paired"], row["flips"], row["changes"] = {}, {}, {}
        if row["method"] == "dense":
            continue
        for t in row["abs"]:  # every per-example metric: flips of 0/1 ones, changed outputs of graded ones
            for m, x in metrics.get((row["label"], t), {}).items():
                d = metrics.get(("dense", t), {}).get(m)
                if d is None:
                    continue
                if not set(d.ids) & set(x.ids):
                    continue  # no example scored by both
                if d.binary() and x.binary():
                    row["flips"].setdefault(t, {})[m] = stats.flips(d, x)
                else:
                    row["changes"].setdefault(t, {})[m] = stats.changes(d, x)
        for t in row["abs"]:
            d, x = series.get(("dense", t)), series.get((row["label"], t))
            if d is not None and x is not None and t in dense:
                row["paired"][t] = stats.paired(d, x, key=t, lower_is_better=tasks.SPECS[t].lower_is_better)
    return rows, dense


def _reproduces(value: float, stored: float) -> bool:
    return _finite(value) and _finite(stored) and math.isclose(value, stored, rel_tol=1e-6, abs_tol=1e-9)


def mcq_protocols(store: Store) -> list[dict]:
    """Per variant, mcq-reasoning's accuracy under each protocol of ``--mcq-protocols`` (``accuracy_loglik`` /
    ``accuracy_generate``) with standard errors, and the paired gap loglik - generate on the same questions
    (``gap``: ``stats.Paired`` of generate -> loglik; "knows the answer but cannot say it" when it is significantly
    above 0). Empty when the store holds no such pair."""
    out, scores = [], store.scores()
    for v in store.variants():
        samples = None
        entry = {"label": v["label"]}
        scored = scores.get(v["label"], {}).get("mcq-reasoning", {})
        for name in ("loglik", "generate"):
            if f"accuracy_{name}" not in scored:
                break
            samples = samples if samples is not None else store.samples(v["label"], "mcq-reasoning")
            s = stats.series("mcq-reasoning", f"accuracy_{name}", samples)
            entry[name] = stats.estimate(s) if s is not None else stats.Estimate(
                scored[f"accuracy_{name}"], int(scored.get("n", 0)), None, None, "no per-example records")
            entry[f"{name}_series"] = s
        else:
            gen, log = entry.pop("generate_series"), entry.pop("loglik_series")
            entry["gap"] = stats.paired(gen, log, key="mcq-protocols") if gen is not None and log is not None \
                else None
            out.append(entry)
    return out


def knowledge(row: dict) -> float | None:
    """Mean share of dense kept (``row["rel"]``, see ``relative``) over the knowledge tasks (``KNOWLEDGE``) the row
    has one for; None when it has none. Raises KeyError when ``row`` has no ``rel``."""
    vals = [row["rel"][t] for t in KNOWLEDGE if t in row["rel"]]
    return sum(vals) / len(vals) if vals else None


def knowledge_collapse(row: dict) -> str | None:
    """A plain warning when the knowledge tasks fell far while perplexity barely moved (LLM-KICK's point)."""
    k, ppl = knowledge(row), row["rel"].get("perplexity")
    if k is None or ppl is None or k >= COLLAPSE_KNOWLEDGE or ppl < COLLAPSE_PERPLEXITY:
        return None
    return (f"Knowledge tasks ({', '.join(t for t in KNOWLEDGE if t in row['rel'])}) fell to {k:.0%} of the dense "
            f"model while perplexity stayed within {1 / ppl - 1:.0%} of dense: perplexity hides what this "
            f"compression destroyed.")


def _rel(row: dict, task: str, dense: dict) -> str:
    return f"{row['rel'][task]:.2f}" if task in row["rel"] else no_relative(row["abs"].get(task), dense.get(task))


def _unstructured(rows: list[dict], method: str) -> list[dict]:
    return sorted([r for r in rows if r["method"] == method and r["pattern"] is None and r["sparsity"] is not None],
                  key=lambda r: r["sparsity"])


def first_loss(rows: list[dict], tasks: list[str]) -> dict[str, dict[str, float | None]]:
    """task -> method -> first sparsity at which the task loses > 5 % relative to dense (None: never); a method
    none of whose variants has a relative score for the task (dense not finite) is left out of that task."""
    out: dict = {}
    methods = sorted({r["method"] for r in rows if r["pattern"] is None and r["sparsity"] is not None})
    for task in tasks:
        out[task] = {}
        for m in methods:
            measured = [r for r in _unstructured(rows, m) if task in r["rel"]]
            if measured:
                out[task][m] = next((r["sparsity"] for r in measured if r["rel"][task] < 1 - LOSS), None)
    return out


def first_significant_loss(rows: list[dict], tasks: list[str]) -> dict[str, dict[str, float | None]]:
    """task -> method -> first sparsity at which the task's change against dense on the same examples
    (``row["paired"]``) is a significant loss (``_lost``: ``stats.Paired.significant`` on the losing side; None:
    never); a method with no paired test for the task at any sparsity is left out of that task."""
    out: dict = {}
    methods = sorted({r["method"] for r in rows if r["pattern"] is None and r["sparsity"] is not None})
    for task in tasks:
        out[task] = {}
        for m in methods:
            measured = [r for r in _unstructured(rows, m) if _paired(r, task) is not None]
            if measured:
                out[task][m] = next((r["sparsity"] for r in measured if _lost(_paired(r, task), task)), None)
    return out


def _paired(row: dict, task: str) -> stats.Paired | None:
    """A row's comparison with dense on ``task`` when a test was run (per-example records, n >= 2)."""
    p = row.get("paired", {}).get(task)
    return p if p is not None and p.p is not None else None


def _lost(p: stats.Paired, task: str) -> bool:
    """A significant loss: the change is significant (``stats.Paired.significant``) and on the worse side."""
    return p.significant and (p.diff > 0 if tasks.SPECS[task].lower_is_better else p.diff < 0)


def knowledge_interval(row: dict) -> stats.Interval | None:
    """The share of dense knowledge kept (``knowledge``) with the interval of the test behind it
    (``stats.relative_mean``: one knowledge task's own interval, McNemar's for a 0/1 metric; several: the sign-flip
    test over all their examples); no interval (``low`` None) for a row without paired records; None when the row
    has no knowledge task."""
    names = [t for t in KNOWLEDGE if t in row["rel"]]
    if not names:
        return None
    ps = [row.get("paired", {}).get(t) for t in names]
    n = min((p.n for p in ps if p is not None), default=0)
    if any(p is None for p in ps):
        return stats.Interval(knowledge(row), None, None, None, n, "no paired records for every knowledge task")
    iv = stats.relative_mean(ps)
    return dataclasses.replace(iv, value=knowledge(row))


def _has_records(row: dict) -> bool:
    """Whether every knowledge task of ``row`` has a paired comparison with dense (per-example records)."""
    return all(t in row.get("paired", {}) for t in KNOWLEDGE if t in row["rel"])


def _state(iv: stats.Interval | None, measured: bool) -> str:
    """``loss`` (the interval of the share kept lies below 1), ``held`` (it lies above 1 - LOSS: a loss of more
    than 5 % is excluded) or ``noise`` (neither). Rows without per-example records (``measured`` False, e.g.
    numbers typed in) fall back to the point value and the 5 % rule."""
    if iv.low is None:
        if measured:
            return "noise"
        return "loss" if iv.value < 1 - LOSS else "held"
    if iv.high < 1:
        return "loss"
    return "held" if iv.low > 1 - LOSS else "noise"


def _ci(iv: stats.Interval, change: bool = True) -> str:
    """`` [95 % CI a, b]`` of a share of dense, as changes from dense (``change``) or as shares; empty without an
    interval (rows typed in), the reason when per-example records gave none."""
    if iv.low is None:
        return f" (no interval: {iv.reason})" if iv.reason and iv.n else ""
    if change:
        return f" [95 % CI {iv.low - 1:+.1%}, {iv.high - 1:+.1%}]"
    return f" [95 % CI {iv.low:.1%}, {iv.high:.1%}]"


def _needed(iv: stats.Interval, centre: float) -> int | None:
    """Examples per task at which the observed change from ``centre`` (1 for a share of dense, 0 for a
    difference), or a 5 % one when it is smaller, would be significant with 80 % power."""
    if iv.stderr is None or not iv.n:
        return None
    return stats.examples_needed(max(abs(iv.value - centre), LOSS), iv.stderr, iv.n)


def _differs(iv: stats.Interval, strict: bool = True) -> bool | None:
    """Whether a difference is above 0: True / False when its interval excludes 0 (or, with no interval, from the
    point value; ``strict``: ``>`` rather than ``>=``), None when the interval holds 0 (within noise)."""
    if iv.low is None:
        return iv.value > 0 if strict else iv.value >= 0
    if iv.excludes(0.0):
        return iv.low > 0
    return None


def findings(rows: list[dict]) -> list[dict]:
    """One entry per LLM-KICK claim: claim, verdict, evidence, and with per-example records the noise behind it.

    Verdicts: ``confirmed`` (every comparison agrees, each beyond noise), ``not confirmed`` (a comparison
    contradicts it beyond noise), ``inconclusive (within noise at n = N)`` (no contradiction, but a comparison's
    95 % paired interval holds both answers; ``examples_needed`` then says how many examples per task would
    resolve it, ``stats.examples_needed``), ``not measured``. Comparisons use the paired intervals of
    ``table_data`` (variant vs dense on the same examples); rows without them (numbers typed in) use the point
    values and the 5 % rule."""
    out = []
    pruning = sorted({r["method"] for r in rows if r["pattern"] is None and r["sparsity"] is not None})

    # 1. knowledge degrades at low sparsity while perplexity barely moves
    ev, ok, noisy = [], [], []
    for m in pruning:
        measured = [(r, knowledge_interval(r)) for r in _unstructured(rows, m)]
        measured = [(r, iv) for r, iv in measured if iv is not None]
        states = [(r, iv, _state(iv, _has_records(r))) for r, iv in measured]
        first = next(((r, iv) for r, iv, st in states if st == "loss"), None)
        if first is None:
            unclear = [(r, iv) for r, iv, st in states if st == "noise"]
            if unclear:
                r, iv = min(unclear, key=lambda x: x[1].value)
                ev.append(f"{m}: no significant knowledge loss; at {r['sparsity']:.0%} knowledge "
                          f"{iv.value - 1:+.1%}{_ci(iv)} is within noise")
                ok.append(None)
                noisy.append((iv, 1.0))
            elif states:
                ev.append(f"{m}: knowledge never lost significantly (a loss > 5 % excluded at every sparsity)"
                          if any(iv.low is not None for _, iv, _ in states) else f"{m}: knowledge never lost > 5 %")
                ok.append(False)
            continue
        r, iv = first
        k_loss = 1 - iv.value
        if "perplexity" not in r["rel"]:  # no finite relative perplexity: the claim cannot be checked here
            dense_ppl = next((x["abs"].get("perplexity") for x in rows if x["method"] == "dense"), None)
            ev.append(f"{m}: at {r['sparsity']:.0%} knowledge -{k_loss:.1%}{_ci(iv)}; perplexity not comparable "
                      f"(dense {format_number(dense_ppl)}, variant {format_number(r['abs'].get('perplexity'))})")
            continue
        ppl_loss = 1 - r["rel"]["perplexity"]
        ev.append(f"{m}: at {r['sparsity']:.0%} knowledge -{k_loss:.1%}{_ci(iv)} while perplexity "
                  f"-{ppl_loss:.1%}")
        ok.append(r["sparsity"] <= 0.5 and ppl_loss < k_loss / 2)
    out.append(_finding("Knowledge degrades at low sparsity while perplexity barely moves", ok, ev, noisy))

    # 2. N:M sparsity fails
    ev, ok, noisy = [], [], []
    for m in pruning:
        nm = [r for r in rows if r["method"] == m and r["pattern"] == "2:4"]
        half = next((r for r in _unstructured(rows, m) if abs(r["sparsity"] - 0.5) < 1e-9), None)
        iv = knowledge_interval(nm[0]) if nm else None
        if nm and half and iv is not None and knowledge(half) is not None:
            st = _state(iv, _has_records(nm[0]))
            ev.append(f"{m}: 2:4 keeps {iv.value:.1%}{_ci(iv, change=False)} of dense knowledge vs {knowledge(half):.1%} "
                      f"unstructured 50 %")
            if st == "noise":
                ok.append(None)
                noisy.append((iv, 1.0))
            else:
                ok.append(st == "loss" and iv.value <= knowledge(half))
    out.append(_finding("N:M (2:4) sparsity fails on knowledge tasks, worse than unstructured at the same ratio",
                        ok, ev, noisy))

    # 3. quantization beats pruning at equal memory (4-bit GPTQ = 1/4 of fp16 bytes; 50 % pruning = 1/2 + mask)
    q4 = next((r for r in rows if r["method"] == "gptq" and r["bits"] == 4), None)
    halves = [r for m in pruning for r in _unstructured(rows, m) if abs(r["sparsity"] - 0.5) < 1e-9]
    claim = "Quantization beats pruning at equal or smaller memory"
    if q4 and halves and knowledge(q4) is not None:
        best = max(halves, key=lambda r: knowledge(r) or 0)
        diff = _knowledge_difference(q4, best)
        verdict = _differs(diff, strict=False)
        out.append(_finding(claim, [verdict],
                            [f"GPTQ 4-bit keeps {knowledge(q4):.1%} of dense knowledge at ~25 % of fp16 bytes; best "
                             f"50 % pruning ({best['label']}) keeps {knowledge(best):.1%} at >= 50 %"
                             + (f" (difference {diff.value:+.1%}, 95 % CI {diff.low:+.1%}, {diff.high:+.1%})"
                                if diff.low is not None else "")],
                            [(diff, 0.0)] if verdict is None else []))
    else:
        out.append(_finding(claim, [], []))

    # 4-5. in-context skills hold up better than closed-book recall at 50 % sparsity
    # (the tasks' roles: ``TaskSpec.finding``; one closed-book task, each in-context task a finding)
    closed = next(t for t, spec in tasks.SPECS.items() if spec.finding and spec.finding.role == "closed-book")
    closed_what = tasks.SPECS[closed].finding.what
    for task, what, claim in ((t, spec.finding.what, spec.finding.claim) for t, spec in tasks.SPECS.items()
                              if spec.finding and spec.finding.role == "in-context"):
        pairs = [r for r in halves if task in r["rel"] and closed in r["rel"]]
        ok, ev, noisy = [], [], []
        for r in pairs:
            diff = _task_difference(r, task, closed)
            ok.append(_differs(diff))
            if ok[-1] is None:
                noisy.append((diff, 0.0))
            ev.append(f"{r['label']}: {what} keeps {r['rel'][task]:.1%}, {closed_what} "
                      f"{r['rel'][closed]:.1%}" + (f" (difference 95 % CI {diff.low:+.1%}, {diff.high:+.1%})"
                                                   if diff.low is not None else ""))
        out.append(_finding(claim, ok, ev, noisy))
    return out


def _knowledge_difference(a: dict, b: dict) -> stats.Interval:
    """Knowledge kept by row ``a`` minus row ``b`` (two variants on the same examples) with the interval of the
    sign-flip test swapping the two variants' values per example (``stats.relative_mean_difference``); without
    paired records for every knowledge task of both, the point difference and no interval."""
    names = [t for t in KNOWLEDGE if t in a["rel"] and t in b["rel"]]
    pa, pb = [a.get("paired", {}).get(t) for t in names], [b.get("paired", {}).get(t) for t in names]
    value = (knowledge(a) or 0.0) - (knowledge(b) or 0.0)
    if not names or any(p is None for p in pa + pb):
        return stats.Interval(value, None, None, None, 0)
    return dataclasses.replace(stats.relative_mean_difference(pa, pb), value=value)


def _task_difference(row: dict, task: str, other: str) -> stats.Interval:
    """A row's share of dense kept on ``task`` minus on ``other`` (independent examples), with the conservative
    interval of ``stats.relative_difference``; the point difference alone without paired records for both."""
    pa, pb = row.get("paired", {}).get(task), row.get("paired", {}).get(other)
    if pa is None or pb is None:
        return stats.Interval(row["rel"][task] - row["rel"][other], None, None, None, 0)
    return dataclasses.replace(stats.relative_difference(pa, pb), value=row["rel"][task] - row["rel"][other])


def _finding(claim: str, ok: list[bool | None], evidence: list[str], noisy: list | None = None) -> dict:
    if not ok:
        verdict = "not measured"
    elif any(o is False for o in ok):
        verdict = "not confirmed"
    elif all(o is True for o in ok):
        verdict = "confirmed"
    else:
        n = min((iv.n for iv, _ in noisy or [] if iv.n), default=0)
        verdict = f"inconclusive (within noise at n = {n})"
    out = {"claim": claim, "verdict": verdict, "evidence": evidence}
    if verdict.startswith("inconclusive"):
        needed = [_needed(iv, centre) for iv, centre in noisy or []]
        out["n"] = n
        out["examples_needed"] = max((x for x in needed if x is not None), default=None)
    return out


# ------------------------------------------------------------------ plots
def _band(row: dict, task: str) -> tuple[float, float]:
    """The paired 95 % interval of a row's relative score on ``task`` (NaN, NaN without one; dense: 1, 1)."""
    if row.get("method") == "dense" or "label" not in row:
        return (1.0, 1.0) if task in row["rel"] else (math.nan, math.nan)
    p = row.get("paired", {}).get(task)
    if p is None or p.rel_low is None or task not in row["rel"]:
        return math.nan, math.nan
    return p.rel_low, p.rel_high


# matplotlib's default colours ("tab10"), one per task in declaration order (``HEADLINE``), so a task has the same
# colour in every plot, whichever tasks a sweep ran, and in the Space (which shows these figures)
TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
TASK_COLOURS = {t: TAB10[i % len(TAB10)] for i, t in enumerate(HEADLINE)}


def _task_label(task: str) -> str:
    return task + " (dense / variant)" if tasks.SPECS[task].lower_is_better else task


def figures(rows: list[dict]) -> dict[str, object]:
    """The report's plots as matplotlib figures, file name -> Figure (the caller saves or shows and closes them):

    - ``sparsity.png``: relative score vs sparsity, one panel per unstructured pruning method (dense is the 0 %
      point), a marker per variant, each point's paired 95 % interval as a band, perplexity dashed (as dense /
      variant), the 0.95-of-dense line labelled; present when the sweep has unstructured pruning variants;
    - ``nm_quant.png``: bars with the same intervals as error bars for the N:M and quantized variants, titled by
      what the sweep has; present when it has any;
    - ``signals.png``: knowledge retained against each signal of distance from dense (``bench.signals.figure``),
      one panel per signal with its Spearman rho and interval; present when a signal has 2 variants or more.

    Legends sit below the axes, never over the data; every task has its ``TASK_COLOURS`` colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, object] = {}
    pruning = sorted({r["method"] for r in rows if r["pattern"] is None and r["sparsity"] is not None})
    names = [t for t in HEADLINE if any(t in r["rel"] for r in rows)]
    if pruning:
        fig, axes = plt.subplots(1, len(pruning), figsize=(5 * len(pruning), 4.6), sharey=True, squeeze=False,
                                 layout="constrained")
        for ax, m in zip(axes[0], pruning):
            pts = [{"sparsity": 0.0, "rel": {t: 1.0 for t in names}}] + _unstructured(rows, m)
            for t in names:
                xs = [p["sparsity"] * 100 for p in pts]
                ax.plot(xs, [p["rel"].get(t, float("nan")) for p in pts], marker="o", markersize=4,
                        linestyle="--" if tasks.SPECS[t].lower_is_better else "-",
                        linewidth=2.5 if t in KNOWLEDGE else 1.5, color=TASK_COLOURS[t], label=_task_label(t))
                band = [_band(p, t) for p in pts]  # the paired 95 % interval of each point (dense: exact 1)
                ax.fill_between(xs, [b[0] for b in band], [b[1] for b in band], color=TASK_COLOURS[t], alpha=0.15,
                                linewidth=0)
            ax.axhline(1 - LOSS, color="grey", linewidth=1, linestyle=":", label=f"{1 - LOSS:.2f} of dense "
                       f"(a {LOSS:.0%} loss)")
            ax.set_title(m)
            ax.set_xlabel("sparsity (%)")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("score relative to dense")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 3), fontsize=8, frameon=False)
        fig.suptitle("Task scores relative to dense vs sparsity\n(bands: paired 95 % intervals)", fontsize=10)
        out["sparsity.png"] = fig
    others = [r for r in rows if r["pattern"] is not None or r["bits"] is not None]
    if others:
        import numpy as np

        fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(others)), 4.6), layout="constrained")
        width = 0.8 / max(len(names), 1)
        x = np.arange(len(others))
        for i, t in enumerate(names):
            heights = [r["rel"].get(t, float("nan")) for r in others]
            band = [_band(r, t) for r in others]
            err = [[max(h - b[0], 0) if math.isfinite(b[0]) else 0 for h, b in zip(heights, band)],
                   [max(b[1] - h, 0) if math.isfinite(b[1]) else 0 for h, b in zip(heights, band)]]
            ax.bar(x + i * width, heights, width, label=_task_label(t), yerr=err, capsize=2, color=TASK_COLOURS[t],
                   error_kw={"linewidth": 0.8})
        ax.set_xticks(x + width * (len(names) - 1) / 2, [r["label"] for r in others], rotation=30, ha="right")
        ax.axhline(1.0, color="black", linewidth=0.8, label="dense")
        ax.set_ylabel("score relative to dense")
        kinds = [k for k, has in (("N:M sparsity", any(r["pattern"] is not None for r in others)),
                                  ("quantization", any(r["bits"] is not None for r in others))) if has]
        ax.set_title(f"{' and '.join(kinds)}: scores relative to dense\n(error bars: paired 95 % intervals)",
                     fontsize=10)
        handles, labels = ax.get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 3), fontsize=8, frameon=False)
        out["nm_quant.png"] = fig
    from kick_hub.bench import signals

    fig = signals.figure(signals.analyse(rows))  # knowledge retained vs each signal, rho in each panel's title
    if fig is not None:
        out["signals.png"] = fig
    return out


def plot(rows: list[dict], out_dir: Path) -> list[str]:
    """Save ``figures`` as PNG files in ``out_dir`` (110 dpi; each through a temp file, ``io.atomic_path``) and
    return their names."""
    import matplotlib.pyplot as plt

    from kick_hub.io import atomic_path

    files = []
    for name, fig in figures(rows).items():
        with atomic_path(out_dir / name) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        files.append(name)
    return files


# ----------------------------------------------------------------- writing
def settings_text(meta: dict) -> str:
    """One sentence naming the settings the stored numbers were measured with (from ``Store.meta``); data and
    calibration sources by ``public_name``. Empty when the store records none."""
    if "data" not in meta:
        return ""
    limit = meta.get("limit")
    if isinstance(limit, dict):
        limit = ", ".join(f"{'others' if t == '*' else t} {'all' if n is None else n}" for t, n in limit.items())
    parts = [f"data `{public_name(meta['data'])}`",
             f"examples per task: {'all' if limit is None else limit}" if "limit" in meta else None,
             f"protocol {meta['protocol']}" if meta.get("protocol") else None, "greedy decoding",
             f"batch size {meta['batch_size']}" if meta.get("batch_size") else None,
             f"device {meta['device']}, dtype {meta['dtype']} (as asked; each variant's manifest records what they "
             f"resolved to)" if meta.get("device") else None]
    if meta.get("calibration"):
        parts.append(f"calibration `{public_name(meta['calibration'])}` (nsamples {meta.get('nsamples') or 'default'}, "
                     f"seqlen {meta.get('seqlen') or 'default'})")
    for task, judge in (meta.get("judge") or {}).items():
        parts.append(f"{task} judge {judge}")
    return "Measured with " + "; ".join(p for p in parts if p) + "."


def _se(row: dict, task: str) -> str:
    """`` ± se`` of a row's headline score, or why it has none (n < 2); empty when nothing is known."""
    if task in row.get("se", {}):
        return f" ± {format_number(row['se'][task], '.2g')}"
    why = row.get("se_reason", {}).get(task)
    return f" [no interval: {why}]" if why else ""


def _score(row: dict, task: str, dense: dict) -> str:
    """A score cell: value ± standard error (relative to dense, ``*`` when the change is significant,
    ``stats.Paired.significant``); ``invalid`` with the count of inputs whose logits were NaN / inf."""
    if task in row.get("invalid", {}):
        return f"invalid ({row['invalid'][task]} inputs with non-finite logits)"
    if task not in row["abs"]:
        return "-"
    p = _paired(row, task)
    mark = "*" if p is not None and p.significant else ""
    return f"{format_number(row['abs'][task])}{_se(row, task)} ({_rel(row, task, dense)}{mark})"


def _signed(x: float) -> str:
    return format_number(x, "+.3g")


def _paired_cell(row: dict, task: str) -> str:
    p = row.get("paired", {}).get(task)
    if p is None:
        return "-"
    mark = " *" if p.significant else ""
    if p.low is None:
        cell = f"{_signed(p.diff)} (no interval: {p.reason}){mark}"
    else:
        cell = f"{_signed(p.diff)} [{_signed(p.low)}, {_signed(p.high)}]{mark}"
    test = {"mcnemar": "McNemar", "sign-flip": "sign-flip", "swap": "swap"}.get(p.method)
    return cell + (f"; {test} p = {format_number(p.p, '.2g')}" if test and p.p is not None else "")


def _rate(k: int, n: int, ci: tuple[float, float] | None) -> str:
    """``k (rate [95 % CI low, high])`` of a count of ``n`` with its Clopper-Pearson interval."""
    if ci is None:
        return str(k)
    return f"{k} ({k / n:.1%} [{ci[0]:.1%}, {ci[1]:.1%}])"


def flip_rows(rows: list[dict]) -> list[list[str]]:
    """The cells of the Flips table: per variant, task and 0/1 metric (``row["flips"]``), n, dense -> variant,
    right -> wrong, wrong -> right and either, each a count with its rate and 95 % Clopper-Pearson interval."""
    out = []
    for r in rows:
        for t, per in r.get("flips", {}).items():
            for m, f in per.items():
                counts = [_rate(getattr(f, w), f.n, f.interval(w)) for w in ("right_to_wrong", "wrong_to_right",
                                                                            "flipped")]
                out.append([r["label"], f"{t} ({m})", str(f.n), f"{format_number(f.dense)} → "
                            f"{format_number(f.variant)}", *counts, "yes" if f.hidden() else "no"])
    return out


def change_rows(rows: list[dict]) -> list[list[str]]:
    """The cells of the changed-outputs table of graded scores (``row["changes"]``): per variant, task and metric,
    n, outputs changed, and scores that fell / rose by more than ``stats.FLIP_THRESHOLD``."""
    return [[r["label"], f"{t} ({m})", str(c.n)] + [_rate(getattr(c, w), c.n, c.interval(w))
                                                    for w in ("changed", "fell", "rose")]
            for r in rows for t, per in r.get("changes", {}).items() for m, c in per.items()]


def recognition_rows(rows: list[dict]) -> list[list[str]]:
    """The cells of the recognition vs generation table (``row["recognition"]``): per model, the 2x2 table of
    mcq-reasoning right by log-likelihood and by generation, and the right option's log-likelihood ranks."""
    out = []
    for r in rows:
        rec = r.get("recognition", {}).get("mcq-reasoning")
        if rec is None:
            continue
        ranks = " / ".join(str(rec.ranks.get(k, 0)) for k in range(1, max(rec.ranks, default=0) + 1)) or "-"
        mean = rec.mean_rank()
        out.append([r["label"], str(rec.n), str(rec.both), str(rec.loglik_only), str(rec.generate_only),
                    str(rec.neither), ranks, "-" if mean is None else f"{mean:.2f}"])
    return out


def hidden_flips(rows: list[dict]) -> list[str]:
    """One sentence per variant, task and 0/1 metric whose accuracy hides its flips (``stats.Flips.hidden``: the
    change is within noise while significantly more than ``stats.FLIP_SHARE`` of the answers flipped)."""
    out = []
    for r in rows:
        for t, per in r.get("flips", {}).items():
            for m, f in per.items():
                if f.hidden():
                    lo, hi = f.interval("flipped")
                    out.append(f"{r['label']}: {t} {m} {format_number(f.dense)} → {format_number(f.variant)} is "
                               f"within noise (McNemar p = {format_number(f.p, '.2g')}), yet {f.flipped} of {f.n} "
                               f"answers flipped ({f.rate('flipped'):.1%}, 95 % CI {lo:.1%} to {hi:.1%}): "
                               f"{f.right_to_wrong} right → wrong, {f.wrong_to_right} wrong → right")
    return out


HIDDEN = "accuracy hides flips"  # the Findings' label of ``hidden_flips``


# ----------------------------------------------------------------- distribution fidelity
# the scores ``kick_hub.scoring.fidelity.summary`` adds to perplexity's results (llama.cpp's definitions)
FIDELITY = ("kl_mean", "kl_mean_stderr", "kl_median", "kl_p90", "kl_p99", "kl_max", "top1_agreement",
            "top1_agreement_stderr", "delta_p_mean", "delta_p_rms", "ppl_ratio", "kl_positions", "kl_mean_upper")
FIDELITY_COLUMNS = ("KL from dense (nats/token)", "top-1 agreement")  # the Scores table's fidelity columns
FIDELITY_COLUMNS_NOTE = ("KL from dense and top-1 agreement: the variant's next-token distributions against "
                         "dense's on the perplexity texts (see Distribution fidelity).")
FIDELITY_NOTE = (
    "each variant's next-token distributions Q against dense's P at every scored position of the perplexity texts, "
    "with llama.cpp's definitions (llama-perplexity --kl-divergence), so the numbers compare with its output: "
    "KL(P || Q) per position in nats (mean ± standard error, median, 90th / 99th percentile, maximum); top-1 "
    "agreement ('same top p'): the share of positions whose most likely token is the same, ± its standard error; "
    "Δp = Q(y) - P(y), the change in the probability of the text's next token y (mean and RMS, in percent as "
    "llama.cpp prints them); PPL ratio = PPL(Q) / PPL(dense) over the same positions. Standard errors take the "
    "texts as sampling units (positions of one text are correlated), so they are larger than llama.cpp's. KL upper "
    "bound (when dense's distributions are stored as their top k tokens): the KL shown is a lower bound and the "
    "true one lies between the two. dense: its own stored distributions again (0 and 100 % by construction).")


def fidelity_scores(scores: dict) -> dict[str, float]:
    """The distribution-fidelity numbers (``FIDELITY``) of one variant's stored scores (task -> metric -> value),
    from its perplexity results; empty when they were not measured or perplexity is invalid (non-finite logits)."""
    def number(x) -> bool:  # an infinite KL (the variant gave a token dense expects probability 0) is shown
        return isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isnan(x)

    ppl = scores.get("perplexity", {})
    if not number(ppl.get("kl_mean")):
        return {}
    return {k: ppl[k] for k in FIDELITY if number(ppl.get(k))}


def _pm_cell(f: dict, key: str, spec: str = ".3g", scale: float = 1.0, unit: str = "") -> str:
    """``value ± stderr`` of fidelity score ``key`` (times ``scale``, ``unit`` after), ``-`` when absent."""
    if key not in f:
        return "-"
    se = f.get(f"{key}_stderr")
    return (format_number(f[key] * scale, spec) + unit
            + (f" ± {format_number(se * scale, '.2g')}{unit}" if se is not None else ""))


def fidelity_cells(row: dict) -> list[str]:
    """The Scores table's ``FIDELITY_COLUMNS`` cells of a row: KL mean ± stderr and top-1 agreement ± stderr;
    ``invalid`` when its perplexity is, ``-`` when not measured."""
    if "perplexity" in row.get("invalid", {}):
        return ["invalid"] * len(FIDELITY_COLUMNS)
    f = row.get("fidelity", {})
    return [_pm_cell(f, "kl_mean"), _pm_cell(f, "top1_agreement", ".2f", 100, " %")]


def fidelity_header(rows: list[dict]) -> list[str]:
    """The Distribution fidelity table's header; the KL upper bound's column only when some row has one."""
    head = ["variant", "KL mean", "KL median", "KL p90", "KL p99", "KL max", "top-1 agreement", "Δp mean",
            "RMS Δp", "PPL ratio", "positions"]
    return head + (["KL mean upper bound"] if any("kl_mean_upper" in r.get("fidelity", {}) for r in rows) else [])


def fidelity_rows(rows: list[dict]) -> list[list[str]]:
    """The cells of the Distribution fidelity table (``row["fidelity"]``, ``fidelity_header``'s columns), one row per
    model that has the numbers; empty when no row has them."""
    upper = any("kl_mean_upper" in r.get("fidelity", {}) for r in rows)
    out = []
    for r in rows:
        f = r.get("fidelity", {})
        if not f:
            continue
        cells = [r["label"], _pm_cell(f, "kl_mean", ".4g")] + [_pm_cell(f, k, ".4g") for k in
                                                               ("kl_median", "kl_p90", "kl_p99", "kl_max")]
        cells += [_pm_cell(f, "top1_agreement", ".2f", 100, " %"), _pm_cell(f, "delta_p_mean", "+.3f", 100, " %"),
                  _pm_cell(f, "delta_p_rms", ".3f", 100, " %"), _pm_cell(f, "ppl_ratio", ".4f"),
                  str(int(f["kl_positions"])) if "kl_positions" in f else "-"]
        out.append(cells + ([_pm_cell(f, "kl_mean_upper", ".4g")] if upper else []))
    return out


def sections(rows: list[dict], dense: dict, losses: dict, significant: dict,
             protocols: list[dict] | None = None) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """The report's tables as ``(title, note, header, rows of cells)``, rendered by ``markdown`` and ``to_html``
    alike: first sparsity with a significant loss (and the 5 % rule beside it), mcq-reasoning under both protocols
    (when the store has them), scores ± standard error, the paired differences against dense, and what the LLM
    judge cost (when a task was judged; ``row["judge"]``), and which signal tracks knowledge across the variants
    (``bench.signals.sections``)."""
    names = [t for t in HEADLINE if t in dense or any(t in r.get("invalid", {}) for r in rows)]
    methods = sorted({m for per in [*losses.values(), *significant.values()] for m in per})

    def first(per: dict, m: str) -> str:
        return "n/a" if m not in per else "never" if per[m] is None else f"{per[m]:.0%}"

    out = [("First sparsity with a significant loss",
            "significant: a significant change (see the paired differences) on the losing side; > 5 %: the "
            "relative score falls below 0.95 of dense, whatever the noise; n/a: not comparable.",
            ["task"] + [f"{m}: {k}" for m in methods for k in ("significant", "> 5 %")],
            [[t] + [first(per, m) for m in methods for per in (significant.get(t, {}), losses.get(t, {}))]
             for t in sorted(set(losses) | set(significant), key=list(HEADLINE).index)])]
    if protocols:
        body = []
        for e in protocols:
            gap = e.get("gap")
            if gap is None:
                g = _signed(e["loglik"].value - e["generate"].value)
            elif gap.low is None:
                g = f"{_signed(gap.diff)} (no interval: {gap.reason})"
            else:
                g = f"{_signed(gap.diff)} [{_signed(gap.low)}, {_signed(gap.high)}]{' *' if gap.significant else ''}"
            body.append([e["label"]] + [format_number(e[k].value) + (f" ± {format_number(e[k].stderr, '.2g')}"
                                                                     if e[k].stderr is not None else
                                                                     f" [no interval: {e[k].reason}]")
                                        for k in ("loglik", "generate")] + [g])
        out.append(("mcq-reasoning under both protocols",
                    "loglik: the option letter with the highest log-likelihood (lm-evaluation-harness); generate: "
                    "the letter the model generates (LLM-KICK). gap = loglik - generate on the same questions, with "
                    "its paired 95 % interval; * = beyond noise: the model ranks the right answer first but does "
                    "not say it.", ["variant", "accuracy (loglik)", "accuracy (generate)", "gap [95 % CI]"], body))
    recognised = recognition_rows(rows)
    if recognised:
        out.append(("mcq-reasoning: recognition vs generation",
                    "the questions scored under both protocols, per model: right by log-likelihood and by "
                    "generation, right by log-likelihood only (the model knows it but cannot say it), by generation "
                    "only, wrong by both; and how many questions put the right option at log-likelihood rank 1 / 2 "
                    "/ ... (1 = the option the log-likelihood protocol picks), with the mean rank.",
                    ["model", "n", "right by both", "loglik only (knows it, cannot say it)", "generate only",
                     "wrong by both", "rank of the right option (loglik) 1 / 2 / ...", "mean rank"], recognised))
    kl = any("kl_mean" in r.get("fidelity", {}) for r in rows)  # distribution fidelity measured: two more columns
    out.append(("Scores",
                "absolute ± standard error (binomial for 0/1 metrics, bootstrap for graded scores, delta method "
                "for perplexity), and relative to dense in brackets (perplexity relative = dense / variant; * = "
                "a significant change against dense on the same examples: its paired 95 % interval excludes 0); "
                "invalid: no score, the model's logits were not finite (a float16 overflow?) for that many inputs."
                + (" " + FIDELITY_COLUMNS_NOTE if kl else ""),
                ["variant"] + [f"{t} ({HEADLINE[t]})" for t in names] + (list(FIDELITY_COLUMNS) if kl else []),
                [[r["label"]] + [_score(r, t, dense) for t in names] + (fidelity_cells(r) if kl else [])
                 for r in rows]))
    fidelity_table = fidelity_rows(rows)
    if fidelity_table:
        out.append(("Distribution fidelity", FIDELITY_NOTE, fidelity_header(rows), fidelity_table))
    external = [r for r in rows if r.get("provenance")]
    if external:
        from kick_hub.external import PROVENANCE_HEADER, describe as provenance_row

        out.append(("External checkpoints",
                    "checkpoints kick-hub did not make (--variant / --variants), evaluated on the same examples as "
                    "dense: their source, the Hub commit measured, a sha256 of their weight files, the format and "
                    "quantization their config declares, the share of zeros in each 2-D float weight matrix outside "
                    "the embeddings (quantized layers are not measured), bits per parameter of the weight files and "
                    "bytes on disk.", PROVENANCE_HEADER, [provenance_row(r["provenance"]) for r in external]))
    others = [r for r in rows if r["method"] != "dense" and r.get("paired")]
    if others:
        out.append(("Paired differences against dense",
                    f"variant - dense on the examples both scored (perplexity: higher is worse), with the 95 % "
                    f"interval that inverts the test named beside it, so * (the interval excludes 0) is exactly p < "
                    f"0.05: McNemar's exact test for 0/1 metrics (Clopper-Pearson interval of the discordant "
                    f"examples), the paired sign-flip test for graded scores and perplexity ({stats.SIGN_FLIPS} "
                    f"sign vectors, seed {stats.SEED}; all of them up to {stats.EXACT_UP_TO} examples).",
                    ["variant"] + [f"{t} ({HEADLINE[t]})" for t in names],
                    [[r["label"]] + [_paired_cell(r, t) for t in names] for r in others]))
    flipped = flip_rows(rows)
    if flipped:
        out.append(("Flips against dense",
                    "answers of every 0/1 metric that changed against dense on the examples both scored (Dutta et al. "
                    "2024, 'Accuracy is not all you need'): right → wrong and wrong → right are McNemar's b and c; "
                    "each count with its rate and exact 95 % Clopper-Pearson interval. Equal counts keep the "
                    f"accuracy while changing answers; hidden: the accuracy change is within noise while "
                    f"significantly more than {stats.FLIP_SHARE:.0%} of the answers flipped.",
                    ["variant", "task (metric)", "n", "dense → variant", "right → wrong", "wrong → right",
                     "flipped", "hidden"], flipped))
    changed = change_rows(rows)
    if changed:
        out.append(("Changed outputs of graded scores",
                    f"per graded metric, the examples whose output text differs from dense's, and of those the ones "
                    f"whose score fell / rose by more than {stats.FLIP_THRESHOLD} (on the 0-1 scale); each count "
                    f"with its rate and exact 95 % Clopper-Pearson interval.",
                    ["variant", "task (metric)", "n", "output changed", f"score fell > {stats.FLIP_THRESHOLD}",
                     f"score rose > {stats.FLIP_THRESHOLD}"], changed))
    judged = [(r["label"], t, u) for r in rows for t, u in r.get("judge", {}).items()]
    if judged:  # what the LLM judge cost, per variant and task and for the whole sweep
        total = {k: sum(u[k] for _, _, u in judged) for k in judged[0][2]}

        def judge_row(label: str, task: str, u: dict) -> list[str]:
            agree = (f"{u['disagreements'] / u['compared']:.0%} of {u['compared']}" if u["compared"] else "n/a")
            return [label, task, str(u["requests"]), f"{u['cache_hits']} of {u['replies']}",
                    f"{u['prompt_tokens']} + {u['completion_tokens']}", f"{u['request_s']:.1f}",
                    str(u["unparsable_replies"]), agree]

        out.append(("LLM judge",
                    "requests sent to the judge (retries included), replies taken from the verdict cache, prompt + "
                    "completion tokens as the judge reported them, seconds spent on requests (summed; concurrent "
                    "requests overlap), unparsable replies, and how often a pairwise verdict changed with the order "
                    "of the two answers (share of the examples judged in both orders).",
                    ["variant", "task", "requests", "cached", "tokens", "request s", "unparsable",
                     "orders disagree"],
                    [judge_row(*j) for j in judged] + [judge_row("all", "all", total)]))
    from kick_hub.bench import signals  # which signal tracks knowledge across the variants (bench/signals.py)

    out += signals.sections(signals.analyse(rows))
    return out


def _finding_text(f: dict) -> str:
    """What would resolve an inconclusive finding (``examples_needed``), or nothing."""
    return f"; about {f['examples_needed']} examples per task would resolve it" if f.get("examples_needed") else ""


def markdown(model: str, rows: list[dict], dense: dict, facts: list[dict], losses: dict, images: list[str],
             settings: str = "", significant: dict | None = None, protocols: list[dict] | None = None) -> str:
    """The report as Markdown; ``settings`` is ``settings_text`` of the store, ``significant``
    ``first_significant_loss`` and ``protocols`` ``mcq_protocols``."""
    lines = [f"# LLM-KICK sweep: {model}", "", *([settings, ""] if settings else []), "## Findings", ""]
    for f in facts:
        lines.append(f"- **{f['verdict']}**: {f['claim']}" + (f" ({'; '.join(f['evidence'])})" if f["evidence"]
                                                              else "") + _finding_text(f))
    lines += [f"- **{HIDDEN}**: {h}" for h in hidden_flips(rows)]
    for title, note, header, body in sections(rows, dense, losses, significant or {}, protocols):
        lines += ["", f"## {title}", "", note, "", "| " + " | ".join(header) + " |", "|---|" + "---|" *
                  (len(header) - 1)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
    lines += [""] + [f"![{img}]({img})" for img in images]
    return "\n".join(lines) + "\n"


def to_html(md_rows: list[dict], model: str, dense: dict, facts: list[dict], losses: dict, images: list[str],
            settings: str = "", significant: dict | None = None, protocols: list[dict] | None = None) -> str:
    """The report as HTML (the same sections as ``markdown``); ``settings`` is ``settings_text`` of the store."""
    esc = html.escape
    parts = [f"<!doctype html><meta charset='utf-8'><title>LLM-KICK sweep: {esc(model)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}"
             ".confirmed{color:#1a7f37}.not{color:#b42318}.inconclusive{color:#9a6700}.unmeasured{color:#57606a}</style>",
             f"<h1>LLM-KICK sweep: {esc(model)}</h1>" + (f"<p>{esc(settings.replace('`', ''))}</p>" if settings else "")
             + "<h2>Findings</h2><ul>"]
    for f in facts:
        cls = {"confirmed": "confirmed", "not confirmed": "not", "not measured": "unmeasured"}.get(
            f["verdict"], f["verdict"].split()[0])  # failed claims red, unmeasured ones grey
        parts.append(f"<li><b class='{esc(cls)}'>{esc(f['verdict'])}</b>: {esc(f['claim'])}<br><small>"
                     f"{esc('; '.join(f['evidence']) + _finding_text(f))}</small></li>")
    parts += [f"<li><b class='inconclusive'>{esc(HIDDEN)}</b>: {esc(h)}</li>" for h in hidden_flips(md_rows)]
    parts.append("</ul>")
    for title, note, header, body in sections(md_rows, dense, losses, significant or {}, protocols):
        parts.append(f"<h2>{esc(title)}</h2><p><small>{esc(note)}</small></p><table><tr>"
                     + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in body]
        parts.append("</table>")
    parts += [f"<p><img src='{esc(i)}' style='max-width:100%'></p>" for i in images]
    return "\n".join(parts) + "\n"


def lm_eval_export(store: Store, out_dir: Path, rows: list[dict] | None = None) -> None:
    """One lm-evaluation-harness-style results JSON per variant under ``lm_eval/`` (strict JSON; the model is named
    as it would be published: ``pretrained=`` is the base model's public name, or ``variants/<label>`` in the run
    dir, never a path of this machine), with the settings the scores were measured with (``Store.meta``). Each
    metric with a standard error has ``<metric>_stderr`` beside it, as lm-evaluation-harness names it; beside
    ``results``, a variant's answers that changed against dense (``flips``, ``changes``: task -> metric ->
    ``to_dict``) and mcq-reasoning's ``recognition`` table when measured (``rows``: ``table_data``'s, computed when
    not given)."""
    out_dir.mkdir(exist_ok=True)
    scores = store.scores()
    model = public_name(store.model)
    meta = store.meta()
    measured = {k: public_name(meta[k]) if k in ("data", "calibration") else meta[k]
                for k in ("data", "limit", "protocol", "batch_size", "calibration", "nsamples", "seqlen", "device",
                          "dtype", "judge")
                if k in meta}
    rows = {r["label"]: r for r in (rows if rows is not None else table_data(store)[0])}
    for v in store.variants():
        spec = loads(v["spec"]) if v["spec"] else None
        pretrained = (spec["external"] if spec and "external" in spec else f"variants/{v['label']}" if spec
                      else model)
        results = {t: dict(m) for t, m in scores.get(v["label"], {}).items()}
        for t, se in rows.get(v["label"], {}).get("se", {}).items():  # a store written before stderr was stored
            results[t].setdefault(f"{HEADLINE[t]}_stderr", se)
        payload = {"results": results,
                   "config": {"model": model, "variant": v["label"], "model_args": f"pretrained={pretrained}",
                              "compression": spec, **measured}}
        row = rows.get(v["label"], {})
        if row.get("flips"):  # answers that changed against dense (stats.Flips / stats.Changes), per task and metric
            payload["flips"] = {t: {m: f.to_dict() for m, f in per.items()} for t, per in row["flips"].items()}
        if row.get("changes"):
            payload["changes"] = {t: {m: c.to_dict() for m, c in per.items()} for t, per in row["changes"].items()}
        if row.get("recognition"):
            payload["recognition"] = {t: x.to_dict() for t, x in row["recognition"].items()}
        if row.get("fidelity"):  # also in results["perplexity"]; here under the one name every output uses
            payload["fidelity"] = row["fidelity"]
        write_json(out_dir / f"{v['label']}.json", payload)


def write(store: Store, run_dir: str | Path) -> Path:
    """report.md, report.html, PNG plots, findings.json and lm_eval/*.json in ``run_dir`` (created if missing).

    findings.json holds the findings, ``first_loss`` (the 5 % rule), ``first_significant_loss``, ``paired`` (variant
    -> task -> the paired comparison with dense, ``stats.Paired.to_dict``), ``mcq_protocols`` (when measured),
    ``flips`` / ``changes`` (variant -> task -> metric -> ``stats.Flips.to_dict`` / ``stats.Changes.to_dict``),
    ``hidden_flips`` (``hidden_flips``), ``recognition`` (model -> ``stats.Recognition.to_dict``), ``fidelity``
    (variant -> ``fidelity_scores``: distribution fidelity against dense), ``signals`` (``bench.signals.Analysis
    .to_dict``: which signal tracks knowledge; its finding is the last of ``findings``) and ``statistics`` (the
    tests, sign vectors, seed, confidence, flip threshold)."""
    run_dir = Path(run_dir)
    rows, dense = table_data(store)
    run_dir.mkdir(parents=True, exist_ok=True)
    from kick_hub.bench import signals

    analysis = signals.analyse(rows)
    facts = findings(rows) + [signals.finding(analysis)]  # and whether perplexity tracks knowledge worst
    names = [t for t in HEADLINE if t in dense]
    losses, significant = first_loss(rows, names), first_significant_loss(rows, names)
    protocols = mcq_protocols(store)
    images = plot(rows, run_dir)
    model = public_name(store.model)
    meta = store.meta()
    settings = settings_text(meta)
    asked = store.task_settings().get("mcq-reasoning", {}).get("mcq_protocols")
    if asked and settings:
        settings = settings[:-1] + f"; mcq-reasoning also scored under {', '.join(asked)}."
    atomic_write_text(run_dir / "report.md", markdown(model, rows, dense, facts, losses, images, settings,
                                                      significant, protocols))
    atomic_write_text(run_dir / "report.html", to_html(rows, model, dense, facts, losses, images, settings,
                                                       significant, protocols))
    write_json(run_dir / "findings.json", {
        "findings": facts, "first_loss": losses, "first_significant_loss": significant,
        "paired": {r["label"]: {t: p.to_dict() for t, p in r["paired"].items()} for r in rows if r["paired"]},
        "mcq_protocols": [{"label": e["label"], **{k: {"value": e[k].value, "stderr": e[k].stderr, "n": e[k].n}
                                                   for k in ("loglik", "generate")},
                           "gap": e["gap"].to_dict() if e.get("gap") else None} for e in protocols],
        "hidden_flips": hidden_flips(rows),
        "flips": {r["label"]: {t: {m: f.to_dict() for m, f in per.items()} for t, per in r["flips"].items()}
                  for r in rows if r.get("flips")},
        "changes": {r["label"]: {t: {m: c.to_dict() for m, c in per.items()} for t, per in r["changes"].items()}
                    for r in rows if r.get("changes")},
        "recognition": {r["label"]: {t: x.to_dict() for t, x in r["recognition"].items()}
                        for r in rows if r.get("recognition")},
        "fidelity": {r["label"]: r["fidelity"] for r in rows if r.get("fidelity")},
        "signals": analysis.to_dict(),
        "statistics": {"tests": {"0/1 metrics": "McNemar exact (Clopper-Pearson interval)",
                                 "graded, perplexity, nll": "paired sign-flip (inverted interval)",
                                 "corpus statistics": "paired swap (no interval)"},
                       "sign_flips": stats.SIGN_FLIPS, "exact_up_to": stats.EXACT_UP_TO, "seed": stats.SEED,
                       "bootstrap_resamples": stats.BOOTSTRAP_ITERS, "confidence": stats.CONFIDENCE,
                       "power": stats.POWER, "flips": "exact Clopper-Pearson intervals on the rates",
                       "flip_threshold": stats.FLIP_THRESHOLD, "flip_share": stats.FLIP_SHARE}})
    lm_eval_export(store, run_dir / "lm_eval", rows)
    return run_dir / "report.md"
