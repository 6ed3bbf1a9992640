"""The sweep report: report.md and report.html (the same tables, ``sections``), findings.json and one
lm-evaluation-harness-style results JSON per variant (``lm_eval_export``), all written by ``write``.

This module renders; the numbers and findings come from ``bench.analysis`` (``table_data``, ``findings``, ...) and
the plots from ``bench.plots``. The table cells here are shared with the other outputs that show the same tables:
the Space (``sections``), the model card and the GGUF card (``fidelity_header`` / ``fidelity_rows``).

Noise (docs/statistics.md): every score is shown ± its standard error, and a change against dense is marked ``*``
exactly when it is significant (``stats.Paired.significant``, its paired 95 % interval excludes 0); the paired
differences table names the test behind each interval. Non-finite scores: tables show ``∞`` / ``NaN``, and where a
variant has no relative score they say why (``analysis.no_relative``); every JSON file is strict JSON
(``kick_hub.io.dumps``).
"""

from __future__ import annotations

import html
from pathlib import Path

from kick_hub.bench.analysis import (HEADLINE, HIDDEN, findings, first_loss, first_significant_loss, hidden_flips,
                                     mcq_protocols, no_relative, paired_test, table_data)
from kick_hub.bench.plots import plot
from kick_hub.bench.store import Store
from kick_hub.io import atomic_write_text, format_number, loads, public_name, write_json
from kick_hub.scoring import stats


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


def _rel(row: dict, task: str, dense: dict) -> str:
    """A row's share of dense on ``task`` (2 decimals), or why it has none (``analysis.no_relative``)."""
    return f"{row['rel'][task]:.2f}" if task in row["rel"] else no_relative(row["abs"].get(task), dense.get(task))


def _score(row: dict, task: str, dense: dict) -> str:
    """A score cell: value ± standard error (relative to dense, ``*`` when the change is significant,
    ``stats.Paired.significant``); ``invalid`` with the count of inputs whose logits were NaN / inf."""
    if task in row.get("invalid", {}):
        return f"invalid ({row['invalid'][task]} inputs with non-finite logits)"
    if task not in row["abs"]:
        return "-"
    p = paired_test(row, task)
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


# ----------------------------------------------------------------- distribution fidelity
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
    (variant -> ``analysis.fidelity_scores``: distribution fidelity against dense), ``signals``
    (``bench.signals.Analysis.to_dict``: which signal tracks knowledge; its finding is the last of ``findings``)
    and ``statistics`` (the tests, sign vectors, seed, confidence, flip threshold)."""
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
