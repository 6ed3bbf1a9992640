"""The sweep's analysis: the numbers every output reads, computed from a results store (``table_data``'s rows),
and the findings they support; no formatting of tables, no plots (``bench.report`` renders, ``bench.plots`` draws).

Here: the rows (``table_data``: per variant and task the headline score, its share of dense, standard error, the
paired comparison with dense, flips and changed outputs, mcq-reasoning's recognition table, what judging cost, the
distribution fidelity, ``fidelity_scores``), knowledge retained (``knowledge``, ``knowledge_interval``,
``knowledge_collapse``), the first sparsity with a loss (``first_loss``: the 5 % rule; ``first_significant_loss``),
mcq-reasoning under both protocols (``mcq_protocols``), the LLM-KICK claims' verdicts (``findings``) and accuracy
that hides flips (``hidden_flips``). The report, the model card, the results dataset, the GGUF card, the Space and
``bench.signals`` read them from here.

Relative score = variant / dense for every task, except perplexity, where it is dense / variant: 1.0 means "as good
as dense" on every axis and lower means worse, so perplexity sits on the same relative axis as the tasks.

Noise (``kick_hub.scoring.stats``, docs/statistics.md): every score has its standard error; every variant is
compared with dense on the same examples by a test of the right size (McNemar's exact test for 0/1 metrics, the
paired sign-flip test for graded scores and perplexity), with the 95 % interval that inverts that test, so a change
is significant exactly when its interval excludes 0 (``stats.Paired.significant``, the one verdict every table,
plot, finding and card reads), and each LLM-KICK claim is confirmed, not confirmed, or inconclusive within noise
(with the examples per task that would resolve it). A store without per-example records (or whose records do not
give its stored score) falls back to the point values and the 5 % rule.

Non-finite scores (a broken model's perplexity is ``inf``): a relative score is always a finite number or absent. A
variant whose perplexity is infinite against a finite dense one keeps 0.0 of dense; when dense itself (or a score) is
not a finite number there is no relative score (``no_relative`` says why).
"""

from __future__ import annotations

import dataclasses
import math

from kick_hub import tasks
from kick_hub.bench.store import Store
from kick_hub.io import format_number, loads
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
    same = same_metrics(store)  # (task, metric) that repeat another metric's numbers: no flips of their own
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
                                      and (t, m) not in same
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


def same_metrics(store: Store) -> set[tuple[str, str]]:
    """``(task, metric)`` pairs whose numbers are another metric's by construction: mcq-reasoning's
    ``accuracy_<name>`` for the protocol the run scored ``accuracy`` under (``tasks.mcq_reasoning.run`` reuses its
    predictions), so its flips are not counted, shown or found twice."""
    from kick_hub.tasks.mcq_reasoning import MCQ_PROTOCOLS

    protocol = (store.settings() or {}).get("protocol", "default")
    return {("mcq-reasoning", f"accuracy_{name}") for name, p in MCQ_PROTOCOLS.items() if p == protocol}


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


def unstructured(rows: list[dict], method: str) -> list[dict]:
    """The unstructured pruning variants of ``method`` (no N:M pattern), by sparsity."""
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
            measured = [r for r in unstructured(rows, m) if task in r["rel"]]
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
            measured = [r for r in unstructured(rows, m) if paired_test(r, task) is not None]
            if measured:
                out[task][m] = next((r["sparsity"] for r in measured if _lost(paired_test(r, task), task)), None)
    return out


def paired_test(row: dict, task: str) -> stats.Paired | None:
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
        measured = [(r, knowledge_interval(r)) for r in unstructured(rows, m)]
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
        half = next((r for r in unstructured(rows, m) if abs(r["sparsity"] - 0.5) < 1e-9), None)
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
    halves = [r for m in pruning for r in unstructured(rows, m) if abs(r["sparsity"] - 0.5) < 1e-9]
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


def fidelity_scores(scores: dict) -> dict[str, float]:
    """The distribution-fidelity numbers (``FIDELITY``) of one variant's stored scores (task -> metric -> value),
    from its perplexity results; empty when they were not measured or perplexity is invalid (non-finite logits)."""
    def number(x) -> bool:  # an infinite KL (the variant gave a token dense expects probability 0) is shown
        return isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isnan(x)

    ppl = scores.get("perplexity", {})
    if not number(ppl.get("kl_mean")):
        return {}
    return {k: ppl[k] for k in FIDELITY if number(ppl.get(k))}
