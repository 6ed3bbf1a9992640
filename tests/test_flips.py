"""Beyond accuracy (issue 35): flips (Dutta et al. 2024, arXiv 2407.09141) and recognition vs generation.

A compressed model can keep its accuracy while changing many answers: ``stats.flips`` counts right -> wrong and
wrong -> right on the examples both scored (McNemar's b and c, by the same rule ``stats.paired`` counts them), with
exact Clopper-Pearson intervals on the rates; ``stats.changes`` does the same for graded scores (outputs that changed,
scores that moved by more than ``stats.FLIP_THRESHOLD``); ``stats.recognition`` is mcq-reasoning's 2x2 table of right
by log-likelihood and by generation. The report, findings.json, lm_eval JSON, card and Space carry the numbers."""

import json

import numpy as np
import pytest
from scipy.stats import binomtest

from kick_hub.bench import analysis, report
from kick_hub.bench.store import Store
from kick_hub.hub import card
from kick_hub.scoring import stats
from kick_hub.tasks.mcq_reasoning import answer_rank

unit = pytest.mark.unit  # needs no model: the fast tier (`pytest -m unit`); the rest run the world model


def _series(values, ids=None, texts=None):
    return stats.Series(ids or list(range(len(values))), np.array(values, dtype=float), texts=texts)


# ----------------------------------------------------------------- the statistics
@unit
def test_an_identical_variant_has_no_flips():
    d = _series([1, 0, 1, 1, 0, 1])
    f = stats.flips(d, d)
    assert (f.n, f.right_to_wrong, f.wrong_to_right, f.flipped) == (6, 0, 0, 0)
    assert f.interval("flipped") == pytest.approx((0.0, 1 - 0.025 ** (1 / 6)))  # exact: 0 of 6
    assert not f.hidden() and f.p == 1.0
    c = stats.changes(_series([0.5, 0.2], texts=["a b", "c"]), _series([0.5, 0.2], texts=["a b", "c"]))
    assert (c.n, c.changed, c.fell, c.rose, c.moved) == (2, 0, 0, 0, 0)


@unit
@pytest.mark.parametrize("seed", range(5))
def test_flip_counts_are_mcnemars_b_and_c(seed):
    rng = np.random.default_rng(seed)
    n = 60
    d, v = rng.integers(0, 2, n), rng.integers(0, 2, n)
    ids = [f"q{i}" for i in range(n)]
    order = list(rng.permutation(n))  # the variant's records in another order: matched by id
    dense, variant = _series(d, ids), _series(v[order], [ids[i] for i in order])
    f, p = stats.flips(dense, variant), stats.paired(dense, variant, key="factoid-qa")
    assert (f.right_to_wrong, f.wrong_to_right, f.n) == (p.b, p.c, p.n)
    assert f.right_to_wrong == int(np.sum((d == 1) & (v == 0))) and f.wrong_to_right == int(np.sum((d == 0) & (v == 1)))
    assert f.p == p.p_mcnemar and f.variant - f.dense == pytest.approx(p.diff)
    for which in ("right_to_wrong", "wrong_to_right", "flipped"):
        k = getattr(f, which)
        ci = binomtest(k, n).proportion_ci(method="exact")
        assert f.interval(which) == pytest.approx((ci.low, ci.high)) and f.rate(which) == k / n


@unit
def test_flips_refuse_a_graded_metric_and_bad_counts():
    with pytest.raises(ValueError, match="flips count 0/1 metrics only"):
        stats.flips(_series([0.5, 1]), _series([1, 1]))
    with pytest.raises(ValueError, match="k, n"):
        stats.proportion_interval(3, 2)
    with pytest.raises(ValueError, match="output texts"):
        stats.changes(_series([0.5, 1]), _series([1, 1]))


@unit
def test_a_balanced_change_keeps_accuracy_and_is_reported_as_hidden():
    """80 of 100 right under both, 15 right -> wrong and 15 wrong -> right: accuracy is the same, 30 % flipped."""
    dense = [1] * 80 + [0] * 20
    variant = [0] * 15 + [1] * 65 + [1] * 15 + [0] * 5
    f = stats.flips(_series(dense), _series(variant))
    assert (f.dense, f.variant, f.right_to_wrong, f.wrong_to_right) == (0.8, 0.8, 15, 15)
    assert f.p == 1.0 and f.interval("flipped")[0] > stats.FLIP_SHARE and f.hidden()
    # a one-sided change of the same size is no longer hidden: the accuracy shows it
    assert not stats.flips(_series(dense), _series([0] * 30 + [1] * 50 + [0] * 20)).hidden()


@unit
def test_graded_changes_count_changed_texts_and_moves_beyond_the_threshold():
    d = _series([0.5, 0.5, 0.5, 0.5, 0.5], texts=["a", "b", "c", "d", "e"])
    v = _series([0.5, 0.35, 0.45, 0.7, 0.1], texts=["a", "x", "y", "z", "e"])  # e: same text, another score
    c = stats.changes(d, v)
    assert stats.FLIP_THRESHOLD == 0.1
    assert (c.n, c.changed, c.fell, c.rose, c.moved) == (5, 3, 1, 1, 2)
    assert c.to_dict()["changed_rate"] == pytest.approx(0.6) and c.to_dict()["threshold"] == 0.1


@unit
def test_answer_rank_breaks_ties_as_the_prediction_does():
    assert answer_rank([-1.0, -2.0, -0.5, -3.0], 0) == 2 and answer_rank([-1.0, -2.0, -0.5, -3.0], 3) == 4
    assert answer_rank([-1.0, -1.0, -2.0, -2.0], 0) == 1 and answer_rank([-1.0, -1.0, -2.0, -2.0], 1) == 2


def _mcq(loglik, generate, ranks):
    return [{"id": f"m{i}", "prompt": "q", "output": "A", "reference": "A", "score": float(a),
             "score_loglik": float(a), "score_generate": float(g), "output_loglik": "A", "output_generate": "B",
             "rank_loglik": r} for i, (a, g, r) in enumerate(zip(loglik, generate, ranks))]


@unit
def test_recognition_table_sums_to_n_and_matches_the_samples():
    loglik = [1, 1, 1, 1, 0, 0, 1, 0]
    generate = [1, 0, 0, 1, 1, 0, 0, 0]
    ranks = [1, 1, 1, 1, 2, 3, 1, 4]  # rank 1 exactly where the log-likelihood protocol is right
    samples = _mcq(loglik, generate, ranks) + [{"id": "skip", "prompt": "q", "output": "", "reference": "A",
                                                 "skipped": "too long"}]
    rec = stats.recognition(samples)
    assert (rec.both, rec.loglik_only, rec.generate_only, rec.neither) == (2, 3, 1, 2)
    assert rec.both + rec.loglik_only + rec.generate_only + rec.neither == rec.n == 8
    assert rec.ranks == {1: 5, 2: 1, 3: 1, 4: 1} and rec.mean_rank() == pytest.approx((5 + 2 + 3 + 4) / 8)
    assert stats.recognition([{"id": 1, "score": 1.0}]) is None
    older = [{k: v for k, v in x.items() if k != "rank_loglik"} for x in samples]  # a store without ranks
    assert stats.recognition(older).ranks == {} and stats.recognition(older).mean_rank() is None
    row = {"label": "old", "recognition": {"mcq-reasoning": stats.recognition(older)}}
    assert report.recognition_rows([row]) == [["old", "8", "2", "3", "1", "2", "-", "-"]]


# ----------------------------------------------------------------- through the real store, report, JSON and card
def _cell(store, label, spec, run, factoid, mcq, summary):
    """factoid-qa (0/1 exact_match and contains), mcq-reasoning under both protocols, icsum (graded rougeL)."""
    loglik, generate, ranks = mcq
    outputs, rouge = summary
    samples = {
        "factoid-qa": [{"id": f"q{i}", "prompt": "q", "output": str(s), "reference": ["1"], "score": float(s),
                        "contains": float(s)} for i, s in enumerate(factoid)],
        "mcq-reasoning": _mcq(loglik, generate, ranks),
        "icsum": [{"id": f"s{i}", "prompt": "p", "output": o, "reference": "r", "score": x, "rouge1": x}
                  for i, (o, x) in enumerate(zip(outputs, rouge))]}
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    results = {"factoid-qa": {"n": len(factoid), "exact_match": mean(factoid), "contains": mean(factoid)},
               "mcq-reasoning": {"n": len(loglik), "accuracy": mean(loglik), "accuracy_loglik": mean(loglik),
                                 "accuracy_generate": mean(generate)},
               "icsum": {"n": len(rouge), "rougeL": mean(rouge), "rouge1": mean(rouge)}}
    for task, scores in results.items():
        scores.update(stats.task_stderrs(task, scores, samples[task]))
    store.write_cell(label, spec["method"] if spec else "dense", spec, None, None, results, samples, run, 1.0)


DENSE_FACTOID = [1] * 80 + [0] * 20
BALANCED = [0] * 15 + [1] * 65 + [1] * 15 + [0] * 5  # 15 right -> wrong, 15 wrong -> right: accuracy 0.8
MCQ_DENSE = ([1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 2, 3])
MCQ_VARIANT = ([1, 1, 1, 0, 1, 0], [1, 0, 0, 0, 0, 0], [1, 1, 1, 2, 1, 4])  # three "knows it, cannot say it"
SUM_DENSE = (["a b", "c d", "e f", "g h"], [0.5, 0.5, 0.5, 0.5])
SUM_VARIANT = (["a b", "x y", "e g", "g h"], [0.5, 0.2, 0.55, 0.5])  # 2 texts changed, 1 fell by > 0.1


@pytest.fixture
def balanced_run(tmp_path):
    store = Store(tmp_path, "world")
    run = store.start_run(["test"])
    _cell(store, "dense", None, run, DENSE_FACTOID, MCQ_DENSE, SUM_DENSE)
    _cell(store, "wanda-50", {"method": "wanda", "sparsity": 0.5, "pattern": None, "bits": None}, run, BALANCED,
          MCQ_VARIANT, SUM_VARIANT)
    report.write(store, tmp_path)
    rows, _ = analysis.table_data(store)
    store.close()
    return tmp_path, rows


@unit
def test_report_findings_and_lm_eval_json_carry_the_flips(balanced_run):
    run_dir, rows = balanced_run
    w = next(r for r in rows if r["label"] == "wanda-50")
    f = w["flips"]["factoid-qa"]["exact_match"]
    p = w["paired"]["factoid-qa"]
    assert (f.right_to_wrong, f.wrong_to_right) == (p.b, p.c) == (15, 15)
    # accuracy_loglik is accuracy itself under the default protocol (the same predictions): its flips count once
    assert set(w["flips"]["mcq-reasoning"]) == {"accuracy", "accuracy_generate"}
    assert "accuracy_loglik" not in (run_dir / "report.md").read_text().split("## Flips against dense")[1]
    gen = w["flips"]["mcq-reasoning"]["accuracy_generate"]
    assert (gen.right_to_wrong, gen.wrong_to_right, gen.n) == (2, 0, 6)
    assert set(w["changes"]["icsum"]) == {"rougeL", "rouge1"} and "icsum" not in w["flips"]
    assert next(r for r in rows if r["label"] == "dense")["flips"] == {}

    lo, hi = f.interval("flipped")
    md = (run_dir / "report.md").read_text()
    assert "## Flips against dense" in md
    assert (f"| wanda-50 | factoid-qa (exact_match) | 100 | 0.8 → 0.8 | 15 ({15 / 100:.1%} "
            f"[{f.interval('right_to_wrong')[0]:.1%}, {f.interval('right_to_wrong')[1]:.1%}]) |") in md
    assert f"| 30 ({0.3:.1%} [{lo:.1%}, {hi:.1%}]) | yes |" in md
    assert (f"- **accuracy hides flips**: wanda-50: factoid-qa exact_match 0.8 → 0.8 is within noise (McNemar p = "
            f"1), yet 30 of 100 answers flipped (30.0%, 95 % CI {lo:.1%} to {hi:.1%}): 15 right → wrong, 15 wrong → "
            f"right") in md
    assert "## Changed outputs of graded scores" in md
    c = w["changes"]["icsum"]["rougeL"]
    assert (c.n, c.changed, c.fell, c.rose) == (4, 2, 1, 0)
    assert f"| wanda-50 | icsum (rougeL) | 4 | 2 ({0.5:.1%} [{c.interval('changed')[0]:.1%}," in md
    assert "accuracy hides flips" in (run_dir / "report.html").read_text()

    facts = json.loads((run_dir / "findings.json").read_text())
    fx = facts["flips"]["wanda-50"]["factoid-qa"]["exact_match"]
    assert (fx["right_to_wrong"], fx["wrong_to_right"], fx["flipped"], fx["n"]) == (15, 15, 30, 100)
    assert fx["flipped_rate"] == 0.3 and fx["flipped_low"] == pytest.approx(lo) and fx["hidden"] is True
    assert fx["right_to_wrong"] == facts["paired"]["wanda-50"]["factoid-qa"]["b"]
    assert [h.split(" 0.8 →")[0] for h in facts["hidden_flips"]] == ["wanda-50: factoid-qa exact_match",
                                                                     "wanda-50: factoid-qa contains"]
    assert facts["changes"]["wanda-50"]["icsum"]["rougeL"]["fell"] == 1
    assert facts["statistics"]["flip_threshold"] == stats.FLIP_THRESHOLD

    lm = json.loads((run_dir / "lm_eval" / "wanda-50.json").read_text())
    assert lm["flips"]["factoid-qa"]["exact_match"] == fx
    assert lm["flips"]["mcq-reasoning"]["accuracy_generate"]["right_to_wrong"] == 2
    assert lm["changes"]["icsum"]["rougeL"]["changed"] == 2
    assert lm["recognition"]["mcq-reasoning"]["loglik_only"] == 3
    dense_lm = json.loads((run_dir / "lm_eval" / "dense.json").read_text())
    assert "flips" not in dense_lm and dense_lm["recognition"]["mcq-reasoning"]["loglik_only"] == 1
    for name in ("findings.json", "lm_eval/wanda-50.json"):  # strict JSON: no NaN anywhere
        json.loads((run_dir / name).read_text(), parse_constant=lambda x: pytest.fail(f"{name}: {x}"))


@unit
def test_report_has_the_recognition_table(balanced_run):
    run_dir, rows = balanced_run
    md = (run_dir / "report.md").read_text()
    assert "## mcq-reasoning: recognition vs generation" in md
    # dense: both right 3, loglik only 1, generate only 0, wrong by both 2; ranks 1: 4, 2: 1, 3: 1
    assert "| dense | 6 | 3 | 1 | 0 | 2 | 4 / 1 / 1 | 1.50 |" in md
    # wanda-50: loglik [1,1,1,0,1,0], generate [1,0,0,0,0,0]: 1 / 3 / 0 / 2, ranks 1: 4, 2: 1, 4: 1
    assert "| wanda-50 | 6 | 1 | 3 | 0 | 2 | 4 / 1 / 0 / 1 | 1.67 |" in md
    rec = next(r for r in rows if r["label"] == "wanda-50")["recognition"]["mcq-reasoning"]
    assert rec.both + rec.loglik_only + rec.generate_only + rec.neither == rec.n == len(MCQ_VARIANT[0])
    facts = json.loads((run_dir / "findings.json").read_text())
    assert facts["recognition"]["wanda-50"]["mcq-reasoning"]["ranks"] == {"1": 4, "2": 1, "4": 1}


@unit
def test_card_carries_the_flips(balanced_run):
    _, rows = balanced_run
    w = next(r for r in rows if r["label"] == "wanda-50")
    dense = next(r for r in rows if r["label"] == "dense")
    text = card._results_table({"row": w, "dense": dense["abs"], "dense_se": dense["se"]})
    f = w["flips"]["factoid-qa"]["exact_match"]
    lo, hi = f.interval("flipped")
    assert (f"| factoid-qa | exact_match | 15 (15.0%) | 15 (15.0%) | 30 (30.0%, 95 % CI {lo:.1%} to {hi:.1%}) "
            f"| yes |") in text
    assert "| mcq-reasoning | accuracy_generate | 2 (33.3%) | 0 (0.0%) |" in text


@unit
def test_space_browser_shows_what_the_variant_knows_but_cannot_say(balanced_run):
    from kick_hub import space

    run_dir, _ = balanced_run
    frame = space.browse(run_dir, "wanda-50", "mcq-reasoning", False, True)
    # wanda-50: right by log-likelihood and wrong by generation on questions 1, 2 and 4
    assert list(frame["id"]) == ["m1", "m2", "m4"]
    assert list(frame["wanda-50"]) == ["log-likelihood picks A; generated 'B'"] * 3
    assert len(space.browse(run_dir, "wanda-50", "mcq-reasoning", False)) == 6  # the filter is off by default
    with pytest.raises(ValueError, match="cannot_say: applies to mcq-reasoning only"):
        space.browse(run_dir, "wanda-50", "factoid-qa", False, True)
    with pytest.raises(ValueError, match="cannot_say: must be true or false"):
        space.browse(run_dir, "wanda-50", "mcq-reasoning", False, "yes")


# ----------------------------------------------------------------- a real sweep of the world model
def test_a_real_sweep_records_ranks_and_reports_the_two_by_two_table(tmp_path):
    """mcq-reasoning under both protocols on the world model: every scored question records the right option's
    log-likelihood rank (1 exactly where the log-likelihood protocol is right), the 2x2 table sums to n and matches
    the samples, and the flips of each 0/1 metric equal McNemar's b and c of the same records."""
    from kick_hub.bench import sweep
    from kick_hub.bench.plan import plan

    store = sweep.run("world", tmp_path, plan(["magnitude"], [0.7], [], []), ["mcq-reasoning"], limit=12,
                      progress=False, mcq_protocols=["loglik", "generate"])
    report.write(store, tmp_path)
    rows, _ = analysis.table_data(store)
    samples = {r["label"]: store.samples(r["label"], "mcq-reasoning") for r in rows}
    store.close()
    md = (tmp_path / "report.md").read_text()
    for r in rows:
        scored = [s for s in samples[r["label"]] if "skipped" not in s]
        assert scored and all((s["rank_loglik"] == 1) == (s["score_loglik"] == 1) for s in scored)
        assert all(1 <= s["rank_loglik"] <= 4 for s in scored)
        rec = r["recognition"]["mcq-reasoning"]
        cells = [sum(1 for s in scored if (s["score_loglik"], s["score_generate"]) == ab)
                 for ab in ((1, 1), (1, 0), (0, 1), (0, 0))]
        assert [rec.both, rec.loglik_only, rec.generate_only, rec.neither] == cells and sum(cells) == rec.n
        assert sum(rec.ranks.values()) == rec.n and rec.ranks.get(1, 0) == rec.both + rec.loglik_only
        assert (f"| {r['label']} | {rec.n} | {rec.both} | {rec.loglik_only} | {rec.generate_only} | "
                f"{rec.neither} |") in md
    w = next(r for r in rows if r["label"] == "magnitude-70")
    dense_scored = {s["id"]: s for s in samples["dense"] if "skipped" not in s}
    assert "accuracy_loglik" not in w["flips"]["mcq-reasoning"]  # the default protocol's: accuracy's own flips
    for metric, field in (("accuracy", "score_loglik"), ("accuracy_generate", "score_generate")):
        f = w["flips"]["mcq-reasoning"][metric]
        pairs = [(dense_scored[s["id"]][field], s[field]) for s in samples["magnitude-70"] if s["id"] in dense_scored]
        assert (f.right_to_wrong, f.wrong_to_right) == (sum(1 for a, b in pairs if a == 1 and b == 0),
                                                        sum(1 for a, b in pairs if a == 0 and b == 1))
    p = w["paired"]["mcq-reasoning"]
    assert (w["flips"]["mcq-reasoning"]["accuracy"].right_to_wrong,
            w["flips"]["mcq-reasoning"]["accuracy"].wrong_to_right) == (p.b, p.c)


@unit
def test_space_filter_needs_both_protocols(tmp_path):
    from kick_hub import space
    from tests.test_stats import _spec, _write

    store = Store(tmp_path, "world")
    run = store.start_run(["test"])
    _write(store, "dense", None, [1, 0, 1], [1.0, 1.1], run)
    _write(store, "wanda-30", _spec(0.3), [0, 1, 1], [1.0, 1.2], run)
    store.close()
    with pytest.raises(ValueError, match="cannot_say: wanda-30's mcq-reasoning was not scored under both protocols"):
        space.browse(tmp_path, "wanda-30", "mcq-reasoning", False, True)


def test_space_endpoint_and_results_tab_carry_them(balanced_run):
    """Through the launched Space: /browse with the filter on, and the Results tab's flips and recognition tables
    (the report's own cells)."""
    pytest.importorskip("gradio")
    from gradio_client import Client

    from kick_hub import space

    run_dir, _ = balanced_run
    demo, url = space.launch(run_dir, port=None, block=False)
    try:
        client = Client(url, verbose=False)
        frame = client.predict("wanda-50", "mcq-reasoning", False, True, api_name="/browse")
        assert [r[-1] for r in frame["data"]] == ["m1", "m2", "m4"]
        with pytest.raises(Exception, match="cannot_say: applies to mcq-reasoning only"):
            client.predict("wanda-50", "factoid-qa", False, True, api_name="/browse")
    finally:
        demo.close()
    sections = space.results_sections(run_dir)
    assert set(space.BEYOND_ACCURACY) - {"Distribution fidelity"} <= set(sections)  # no perplexity: no fidelity
    _, header, body = sections["Flips against dense"]
    assert header[4:7] == ["right → wrong", "wrong → right", "flipped"]
    assert body[0][:3] == ["wanda-50", "factoid-qa (exact_match)", "100"] and body[0][-1] == "yes"
    assert sections["mcq-reasoning: recognition vs generation"][2][1][:6] == ["wanda-50", "6", "1", "3", "0", "2"]


def test_a_real_variant_card_carries_its_flips(small_run):
    """The card of a real sweep's variant (``card.variant_card`` with its run dir) lists each 0/1 metric's flips,
    the same counts as the report's table_data (McNemar's b and c)."""
    store = Store(small_run, None)
    rows, _ = analysis.table_data(store)
    store.close()
    w = next(r for r in rows if r["label"] == "magnitude-70")
    text = card.variant_card(small_run / "variants" / "magnitude-70", "test-org/world-magnitude-70", small_run).text
    assert "| task | metric | right → wrong | wrong → right | flipped | hidden |" in text
    f = w["flips"]["factoid-qa"]["exact_match"]
    assert (f.right_to_wrong, f.wrong_to_right) == (w["paired"]["factoid-qa"].b, w["paired"]["factoid-qa"].c)
    assert (f"| factoid-qa | exact_match | {f.right_to_wrong} ({f.rate('right_to_wrong'):.1%}) | "
            f"{f.wrong_to_right} ({f.rate('wrong_to_right'):.1%}) | {f.flipped} ({f.rate('flipped'):.1%}") in text
