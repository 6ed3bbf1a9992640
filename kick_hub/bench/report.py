"""The sweep report: tables (absolute and relative to dense), plots, and findings computed from the numbers.

Relative score = variant / dense for every task, except perplexity, where it is dense / variant: 1.0 means "as good
as dense" on every axis and lower means worse, so perplexity sits on the same relative axis as the tasks.

Non-finite scores (a broken model's perplexity is ``inf``): a relative score is always a finite number or absent. A
variant whose perplexity is infinite against a finite dense one keeps 0.0 of dense; when dense itself (or a score) is
not a finite number there is no relative score, and the tables say why. Tables show ``∞`` / ``NaN``; every JSON file
is strict JSON (``kick_hub.io.dumps``).
"""

from __future__ import annotations

import html
import math
from pathlib import Path

from kick_hub import tasks
from kick_hub.bench.store import Store
from kick_hub.io import atomic_write_text, format_number, loads, public_name, write_json

# headline metric, knowledge flag and direction come from the task specs (kick_hub.tasks.specs)
HEADLINE = {name: spec.metric for name, spec in tasks.SPECS.items()}  # task id -> its headline metric
KNOWLEDGE = tuple(name for name, spec in tasks.SPECS.items() if spec.knowledge)
LOSS = 0.05  # "loses more than 5 % relative to dense"
# "knowledge collapsed while perplexity did not": knowledge below 80 % of dense, perplexity within 10 % of dense
COLLAPSE_KNOWLEDGE, COLLAPSE_PERPLEXITY = 0.80, 0.90


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
    """Rows (one per variant: label, method, sparsity, pattern, bits, abs/rel per task) and the dense scores."""
    scores = store.scores()
    if "dense" not in scores:
        raise ValueError("report: the store has no dense baseline yet")
    dense = {t: scores["dense"][t][m] for t, m in HEADLINE.items() if t in scores["dense"]}
    rows = []
    for v in store.variants():
        s = scores.get(v["label"], {})
        row = {k: v[k] for k in ("label", "method", "sparsity", "pattern", "bits")}
        row["abs"] = {t: s[t][m] for t, m in HEADLINE.items() if t in s and m in s[t]}
        rel = {t: relative(t, x, dense[t]) for t, x in row["abs"].items() if t in dense}
        row["rel"] = {t: r for t, r in rel.items() if r is not None}
        rows.append(row)
    return rows, dense


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


def findings(rows: list[dict]) -> list[dict]:
    """One entry per LLM-KICK claim: claim, verdict (confirmed / not confirmed / not measured), evidence."""
    out = []
    pruning = sorted({r["method"] for r in rows if r["pattern"] is None and r["sparsity"] is not None})

    # 1. knowledge degrades at low sparsity while perplexity barely moves
    ev, ok = [], []
    for m in pruning:
        first = next((r for r in _unstructured(rows, m) if (knowledge(r) is not None and knowledge(r) < 1 - LOSS)),
                     None)
        if first is None:
            ev.append(f"{m}: knowledge never lost > 5 %")
            ok.append(False)
            continue
        k_loss = 1 - knowledge(first)
        if "perplexity" not in first["rel"]:  # no finite relative perplexity: the claim cannot be checked here
            dense_ppl = next((r["abs"].get("perplexity") for r in rows if r["method"] == "dense"), None)
            ev.append(f"{m}: at {first['sparsity']:.0%} knowledge -{k_loss:.1%}; perplexity not comparable (dense "
                      f"{format_number(dense_ppl)}, variant {format_number(first['abs'].get('perplexity'))})")
            continue
        ppl_loss = 1 - first["rel"]["perplexity"]
        ev.append(f"{m}: at {first['sparsity']:.0%} knowledge -{k_loss:.1%} while perplexity -{ppl_loss:.1%}")
        ok.append(first["sparsity"] <= 0.5 and ppl_loss < k_loss / 2)
    out.append(_finding("Knowledge degrades at low sparsity while perplexity barely moves", ok, ev))

    # 2. N:M sparsity fails
    ev, ok = [], []
    for m in pruning:
        nm = [r for r in rows if r["method"] == m and r["pattern"] == "2:4"]
        half = next((r for r in _unstructured(rows, m) if abs(r["sparsity"] - 0.5) < 1e-9), None)
        if nm and half and knowledge(nm[0]) is not None:
            ev.append(f"{m}: 2:4 keeps {knowledge(nm[0]):.1%} of dense knowledge vs {knowledge(half):.1%} "
                      f"unstructured 50 %")
            ok.append(knowledge(nm[0]) < 1 - LOSS and knowledge(nm[0]) <= knowledge(half))
    out.append(_finding("N:M (2:4) sparsity fails on knowledge tasks, worse than unstructured at the same ratio",
                        ok, ev))

    # 3. quantization beats pruning at equal memory (4-bit GPTQ = 1/4 of fp16 bytes; 50 % pruning = 1/2 + mask)
    q4 = next((r for r in rows if r["method"] == "gptq" and r["bits"] == 4), None)
    halves = [r for m in pruning for r in _unstructured(rows, m) if abs(r["sparsity"] - 0.5) < 1e-9]
    if q4 and halves and knowledge(q4) is not None:
        best = max(halves, key=lambda r: knowledge(r) or 0)
        out.append(_finding("Quantization beats pruning at equal or smaller memory",
                            [knowledge(q4) >= (knowledge(best) or 0)],
                            [f"GPTQ 4-bit keeps {knowledge(q4):.1%} of dense knowledge at ~25 % of fp16 bytes; best "
                             f"50 % pruning ({best['label']}) keeps {knowledge(best):.1%} at >= 50 %"]))
    else:
        out.append(_finding("Quantization beats pruning at equal or smaller memory", [], []))

    # 4-5. in-context skills hold up better than closed-book recall at 50 % sparsity
    for task, what, claim in (
            ("icra-qa", "in-context QA", "In-context retrieval is more robust to pruning than closed-book recall"),
            ("icsum", "summarization ROUGE-L", "Pruned models stay decent at in-context summarization")):
        pairs = [r for r in halves if task in r["rel"] and "factoid-qa" in r["rel"]]
        out.append(_finding(claim, [r["rel"][task] > r["rel"]["factoid-qa"] for r in pairs],
                            [f"{r['label']}: {what} keeps {r['rel'][task]:.1%}, closed-book factoid "
                             f"{r['rel']['factoid-qa']:.1%}" for r in pairs]))
    return out


def _finding(claim: str, ok: list[bool], evidence: list[str]) -> dict:
    verdict = "not measured" if not ok else ("confirmed" if all(ok) else "not confirmed")
    return {"claim": claim, "verdict": verdict, "evidence": evidence}


# ------------------------------------------------------------------ plots
def plot(rows: list[dict], out_dir: Path) -> list[str]:
    """PNG files: relative score vs sparsity per pruning method (perplexity dashed on the same axis), and bars
    for N:M and quantization variants."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    pruning = sorted({r["method"] for r in rows if r["pattern"] is None and r["sparsity"] is not None})
    tasks = [t for t in HEADLINE if any(t in r["rel"] for r in rows)]
    if pruning:
        fig, axes = plt.subplots(1, len(pruning), figsize=(5 * len(pruning), 4), sharey=True, squeeze=False)
        for ax, m in zip(axes[0], pruning):
            pts = [{"sparsity": 0.0, "rel": {t: 1.0 for t in tasks}}] + _unstructured(rows, m)
            for t in tasks:
                ax.plot([p["sparsity"] * 100 for p in pts], [p["rel"].get(t, float("nan")) for p in pts],
                        marker="o", linestyle="--" if t == "perplexity" else "-", linewidth=2.5 if t in KNOWLEDGE
                        else 1.5, label=t + (" (dense/ppl)" if t == "perplexity" else ""))
            ax.axhline(1 - LOSS, color="grey", linewidth=0.8, linestyle=":")
            ax.set_title(m)
            ax.set_xlabel("sparsity (%)")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("score relative to dense")
        axes[0][-1].legend(fontsize=8, loc="lower left")
        fig.suptitle("What perplexity hides: task scores vs sparsity")
        fig.tight_layout()
        fig.savefig(out_dir / "sparsity.png", dpi=110)
        plt.close(fig)
        files.append("sparsity.png")
    others = [r for r in rows if r["pattern"] is not None or r["bits"] is not None]
    if others:
        import numpy as np

        fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(others)), 4))
        width = 0.8 / max(len(tasks), 1)
        x = np.arange(len(others))
        for i, t in enumerate(tasks):
            ax.bar(x + i * width, [r["rel"].get(t, float("nan")) for r in others], width, label=t)
        ax.set_xticks(x + width * (len(tasks) - 1) / 2, [r["label"] for r in others], rotation=30, ha="right")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_ylabel("score relative to dense")
        ax.set_title("N:M sparsity and quantization")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "nm_quant.png", dpi=110)
        plt.close(fig)
        files.append("nm_quant.png")
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
             f"batch size {meta['batch_size']}" if meta.get("batch_size") else None]
    if meta.get("calibration"):
        parts.append(f"calibration `{public_name(meta['calibration'])}` (nsamples {meta.get('nsamples') or 'default'}, "
                     f"seqlen {meta.get('seqlen') or 'default'})")
    for task, judge in (meta.get("judge") or {}).items():
        parts.append(f"{task} judge {judge}")
    return "Measured with " + "; ".join(p for p in parts if p) + "."


def markdown(model: str, rows: list[dict], dense: dict, facts: list[dict], losses: dict, images: list[str],
             settings: str = "") -> str:
    """The report as Markdown; ``settings`` is ``settings_text`` of the store."""
    tasks = [t for t in HEADLINE if t in dense]
    methods = sorted({m for per in losses.values() for m in per})
    head = "| variant | " + " | ".join(f"{t} ({HEADLINE[t]})" for t in tasks) + " |"
    lines = [f"# LLM-KICK sweep: {model}", "", *([settings, ""] if settings else []), "## Findings", ""]
    for f in facts:
        lines.append(f"- **{f['verdict']}**: {f['claim']}" + (f" ({'; '.join(f['evidence'])})" if f["evidence"]
                                                              else ""))
    lines += ["", "## First sparsity losing > 5 % relative to dense", "",
              "| task | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for t, per in losses.items():  # a method missing for a task has no relative score there (dense not finite)
        lines.append(f"| {t} | " + " | ".join("n/a" if m not in per else "never" if per[m] is None
                                               else f"{per[m]:.0%}" for m in methods) + " |")
    lines += ["", "## Scores (absolute, and relative to dense in brackets; perplexity relative = dense / variant)",
              "", head, "|---|" + "---|" * len(tasks)]
    for r in rows:
        cells = [f"{format_number(r['abs'][t])} ({_rel(r, t, dense)})" if t in r["abs"] else "-" for t in tasks]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    lines += [""] + [f"![{img}]({img})" for img in images]
    return "\n".join(lines) + "\n"


def to_html(md_rows: list[dict], model: str, dense: dict, facts: list[dict], losses: dict, images: list[str],
            settings: str = "") -> str:
    """The report as HTML; ``settings`` is ``settings_text`` of the store."""
    tasks = [t for t in HEADLINE if t in dense]
    esc = html.escape
    parts = [f"<!doctype html><meta charset='utf-8'><title>LLM-KICK sweep: {esc(model)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}"
             ".confirmed{color:#1a7f37}.not{color:#b42318}</style>",
             f"<h1>LLM-KICK sweep: {esc(model)}</h1>" + (f"<p>{esc(settings.replace('`', ''))}</p>" if settings else "")
             + "<h2>Findings</h2><ul>"]
    for f in facts:
        cls = "confirmed" if f["verdict"] == "confirmed" else "not"
        parts.append(f"<li><b class='{cls}'>{esc(f['verdict'])}</b>: {esc(f['claim'])}<br><small>"
                     f"{esc('; '.join(f['evidence']))}</small></li>")
    parts.append("</ul><h2>Scores</h2><table><tr><th>variant</th>" +
                 "".join(f"<th>{esc(t)}<br>{esc(HEADLINE[t])}</th>" for t in tasks) + "</tr>")
    for r in md_rows:
        parts.append(f"<tr><td>{esc(r['label'])}</td>" + "".join(
            f"<td>{esc(format_number(r['abs'][t]))} ({esc(_rel(r, t, dense))})</td>" if t in r["abs"] else "<td>-</td>"
            for t in tasks)
            + "</tr>")
    parts.append("</table>")
    parts += [f"<p><img src='{esc(i)}' style='max-width:100%'></p>" for i in images]
    return "\n".join(parts) + "\n"


def lm_eval_export(store: Store, out_dir: Path) -> None:
    """One lm-evaluation-harness-style results JSON per variant under ``lm_eval/`` (strict JSON; the model is named
    as it would be published: ``pretrained=`` is the base model's public name, or ``variants/<label>`` in the run
    dir, never a path of this machine), with the settings the scores were measured with (``Store.meta``)."""
    out_dir.mkdir(exist_ok=True)
    scores = store.scores()
    model = public_name(store.model)
    meta = store.meta()
    measured = {k: public_name(meta[k]) if k in ("data", "calibration") else meta[k]
                for k in ("data", "limit", "protocol", "batch_size", "calibration", "nsamples", "seqlen", "judge")
                if k in meta}
    for v in store.variants():
        spec = loads(v["spec"]) if v["spec"] else None
        pretrained = f"variants/{v['label']}" if spec else model
        payload = {"results": scores.get(v["label"], {}),
                   "config": {"model": model, "variant": v["label"], "model_args": f"pretrained={pretrained}",
                              "compression": spec, **measured}}
        write_json(out_dir / f"{v['label']}.json", payload)


def write(store: Store, run_dir: str | Path) -> Path:
    """report.md, report.html, PNG plots, findings.json and lm_eval/*.json in ``run_dir`` (created if missing)."""
    run_dir = Path(run_dir)
    rows, dense = table_data(store)
    run_dir.mkdir(parents=True, exist_ok=True)
    facts = findings(rows)
    losses = first_loss(rows, [t for t in HEADLINE if t in dense])
    images = plot(rows, run_dir)
    model = public_name(store.model)
    settings = settings_text(store.meta())
    atomic_write_text(run_dir / "report.md", markdown(model, rows, dense, facts, losses, images, settings))
    atomic_write_text(run_dir / "report.html", to_html(rows, model, dense, facts, losses, images, settings))
    write_json(run_dir / "findings.json", {"findings": facts, "first_loss": losses})
    lm_eval_export(store, run_dir / "lm_eval")
    return run_dir / "report.md"
