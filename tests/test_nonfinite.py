"""Non-finite numbers (a broken model's perplexity is inf): no traceback, strict JSON in every file written, readable
tables, finite relative scores, a model-index of numbers only."""

import json
import math
import sqlite3
from pathlib import Path

import pytest

from kick_hub import io
from kick_hub.bench import analysis, report
from kick_hub.bench.store import FILENAME, Store

pytestmark = pytest.mark.unit  # needs no model: the fast tier (`pytest -m unit`)

INF, NAN = math.inf, math.nan


def strict_load(text: str | bytes):
    """json.loads that refuses the non-JSON tokens Infinity / -Infinity / NaN."""
    def refuse(token):
        raise ValueError(f"non-JSON constant {token}")
    return json.loads(text, parse_constant=refuse)


# ----------------------------------------------------------------- the helper
def test_dumps_is_strict_and_loads_restores():
    obj = {"a": INF, "b": [1.5, NAN, {"c": -INF}], "d/e~f": INF, "ok": 2.0, "t": (1, 2)}
    text = io.dumps(obj, indent=2)
    parsed = strict_load(text)
    assert parsed["a"] is None and parsed["b"][1] is None and parsed["b"][2]["c"] is None and parsed["ok"] == 2.0
    assert parsed["non_finite"] == {"/a": "inf", "/b/1": "nan", "/b/2/c": "-inf", "/d~1e~0f": "inf"}
    back = io.loads(text)
    assert back["a"] == INF and math.isnan(back["b"][1]) and back["b"][2]["c"] == -INF and back["d/e~f"] == INF
    assert "non_finite" not in back and back["t"] == [1, 2]
    assert io.dumps({"x": 1.0}) == '{"x": 1.0}'  # nothing added when every number is finite
    with pytest.raises(TypeError, match="need a dict at the top level"):
        io.dumps([INF])


@pytest.mark.parametrize("value, text", [(INF, "∞"), (-INF, "-∞"), (NAN, "NaN"), (None, "-"), (12.34567, "12.35")])
def test_format_number(value, text):
    assert io.format_number(value) == text


def test_evaluate_table_prints_inf():
    from kick_hub.evaluation import table

    out = table({"perplexity": {"n": 3, "perplexity": INF, "nll": 900.5}})
    assert "perplexity  perplexity  inf" in out


@pytest.mark.parametrize("task, value, dense, rel", [
    ("perplexity", INF, 10.0, 0.0),     # infinitely worse than a finite dense: keeps nothing
    ("perplexity", 20.0, 10.0, 0.5),
    ("perplexity", 20.0, INF, None),    # dense infinite: no relative score
    ("perplexity", INF, INF, None),
    ("perplexity", NAN, 10.0, None),
    ("perplexity", 0.0, 10.0, None),    # division by zero
    ("factoid-qa", 0.5, 0.0, None),     # dense scored 0
    ("factoid-qa", NAN, 0.5, None),
    ("factoid-qa", 0.25, NAN, None),
    ("factoid-qa", 0.25, 0.5, 0.5),
])
def test_relative_is_finite_or_none(task, value, dense, rel):
    assert analysis.relative(task, value, dense) == rel


# ----------------------------------------------------------------- writers, with synthetic results
def _cell(store, label, method, spec, ppl, factoid, per_example):
    store.write_cell(label, method, spec, None, None,
                     {"perplexity": {"n": 2, "perplexity": ppl, "nll": 800.0, "tokens": 20},
                      "factoid-qa": {"n": 2, "exact_match": factoid}},
                     {"perplexity": [{"id": i, "prompt": "t", "output": "", "reference": "", "score": s}
                                     for i, s in enumerate(per_example)],
                      "factoid-qa": [{"id": 0, "prompt": "q", "output": "a", "reference": "a", "score": 1.0},
                                     {"id": 1, "prompt": "q", "output": "b", "reference": "a", "score": 0.0}]},
                     run_id=1, seconds=1.0)


def _store(run_dir: Path, dense_ppl: float, variant_ppl: float) -> Store:
    run_dir.mkdir(parents=True, exist_ok=True)
    store = Store(run_dir, str(run_dir / "models" / "my-llama"))
    _cell(store, "dense", "dense", None, dense_ppl, 0.5, [dense_ppl, 12.0])
    for s, ppl, em in ((0.3, 15.0, 0.5), (0.5, variant_ppl, 0.0)):
        spec = {"method": "magnitude", "sparsity": s, "pattern": None, "bits": None}
        _cell(store, f"magnitude-{round(s * 100)}", "magnitude", spec, ppl, em, [ppl, NAN])
    return store


def test_store_keeps_non_finite_scores_and_samples(tmp_path):
    store = _store(tmp_path, 10.0, INF)
    scores = store.scores()
    assert scores["magnitude-50"]["perplexity"]["perplexity"] == INF
    assert scores["dense"]["perplexity"]["perplexity"] == 10.0
    samples = store.samples("magnitude-50", "perplexity")
    assert samples[0]["score"] == INF and math.isnan(samples[1]["score"])
    store.close()
    db = sqlite3.connect(tmp_path / FILENAME)
    assert db.execute("SELECT value, typeof(value) FROM scores WHERE label = 'magnitude-50' AND metric = "
                      "'perplexity'").fetchone() == ("inf", "text")
    for (record,) in db.execute("SELECT record FROM samples"):
        strict_load(record)
    db.close()


@pytest.mark.parametrize("dense_ppl", [10.0, INF], ids=["finite-dense", "infinite-dense"])
def test_report_files_are_strict_and_readable(tmp_path, dense_ppl):
    store = _store(tmp_path, dense_ppl, INF)
    report.write(store, tmp_path)
    store.close()
    for name in ["findings.json", *[f"lm_eval/{p.name}" for p in (tmp_path / "lm_eval").iterdir()]]:
        strict_load((tmp_path / name).read_text())
    lm = strict_load((tmp_path / "lm_eval" / "magnitude-50.json").read_text())
    assert lm["results"]["perplexity"]["perplexity"] is None and lm["results"]["perplexity"]["nll"] == 800.0
    assert lm["non_finite"] == {"/results/perplexity/perplexity": "inf"}
    md = (tmp_path / "report.md").read_text()
    html = (tmp_path / "report.html").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| magnitude-50 |"))
    assert "Infinity" not in md + html and "NaN" not in md + html
    if dense_ppl == INF:
        assert "| ∞ (dense ∞) |" in row and "∞ (dense ∞)" in html
        assert "| perplexity | n/a |" in md  # no relative perplexity: the loss table says so, not "never"
        facts = strict_load((tmp_path / "findings.json").read_text())["findings"]
        assert "perplexity not comparable (dense ∞, variant ∞)" in facts[0]["evidence"][0]
        assert facts[0]["verdict"] == "not measured"
    else:
        assert "| ∞ (0.00) |" in row  # infinite perplexity keeps 0.0 of a finite dense
        assert "| perplexity | n/a | 30% |" in md  # 15 against 10 keeps 0.67 of dense at 30 %
    assert (tmp_path / "sparsity.png").stat().st_size > 0


def _variant(tmp_path: Path, base: str) -> Path:
    vdir = tmp_path / "variants" / "magnitude-50"
    vdir.mkdir(parents=True)
    manifest = {"base_model": base, "label": "magnitude-50", "method": "magnitude",
                "spec": {"method": "magnitude", "sparsity": 0.5, "pattern": None, "bits": None},
                "calibration": None, "layer_sparsity": {}, "sparsity": 0.5, "wall_time_s": 1.0, "peak_rss_mb": 10.0,
                "versions": {}}
    (vdir / "kick_manifest.json").write_text(json.dumps(manifest))
    return vdir


@pytest.mark.parametrize("dense_ppl", [10.0, INF], ids=["finite-dense", "infinite-dense"])
def test_card_model_index_holds_numbers_only(tmp_path, dense_ppl):
    from huggingface_hub import ModelCard

    from kick_hub.hub.card import variant_card

    store = _store(tmp_path, dense_ppl, INF)
    store.close()
    card = variant_card(_variant(tmp_path, str(tmp_path / "models" / "my-llama")), "org/my-llama-magnitude-50",
                        tmp_path)
    parsed = ModelCard(str(card))
    metrics = {r.task_name: r.metric_value for r in parsed.data.eval_results}
    assert metrics == {"factoid-qa": 0.0}  # the infinite perplexity is left out of the model-index
    assert ".inf" not in str(card) and ".nan" not in str(card).lower()
    line = next(x for x in card.text.splitlines() if x.startswith("| perplexity"))
    assert line.endswith(f"| {io.format_number(dense_ppl)} | ∞ | {'+∞' if dense_ppl == 10.0 else ''} |")
    assert "left out of the model-index" in card.text


@pytest.mark.parametrize("dense_ppl", [10.0, INF], ids=["finite-dense", "infinite-dense"])
def test_results_dataset_is_strict_and_loads_with_datasets(tmp_path, monkeypatch, dense_ppl):
    import huggingface_hub

    from kick_hub.hub import results

    store = _store(tmp_path / "run", dense_ppl, INF)
    store.close()
    path, record = results.run_record(tmp_path / "run")
    repo = tmp_path / "repo"
    (repo / path).parent.mkdir(parents=True)
    (repo / path).write_text(io.dumps(record, indent=2))
    other = json.loads(json.dumps(strict_load((repo / path).read_text())))  # a second run whose scores are finite
    other.pop("non_finite")
    for row in other["rows"]:
        row["perplexity"], row["run"] = 11.0, "other"
    (repo / "results" / "other.json").write_text(json.dumps(other))
    text = (repo / path).read_text()
    doc = strict_load(text)
    row = next(r for r in doc["rows"] if r["variant"] == "magnitude-50")
    assert row["perplexity"] is None and row["model"] == "my-llama"
    assert doc["non_finite"][f"/rows/{doc['rows'].index(row)}/perplexity"] == "inf"
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: str(repo))
    ds = results.load_results("org/results")
    frame = ds.to_pandas()
    assert len(frame) == 6 and frame["perplexity"].dtype == "float64"
    got = dict(zip(zip(frame["run"], frame["variant"]), frame["perplexity"]))
    assert got[(row["run"], "magnitude-50")] == INF and got[("other", "magnitude-50")] == 11.0


def test_space_tables_show_infinity(tmp_path):
    pytest.importorskip("gradio")
    from kick_hub import space

    store = _store(tmp_path, 10.0, INF)
    store.close()
    frame = space.results_frame(tmp_path)  # the report's cells: absolute (relative to dense)
    assert frame.set_index("variant").loc["magnitude-50", "perplexity (perplexity)"] == "∞ (0.00)"
    board = space.leaderboard_frame(tmp_path)
    assert board.set_index("variant").loc["magnitude-50", "perplexity"] == "∞"
    browse = space.browse(tmp_path, "magnitude-50", "factoid-qa", False)
    assert len(browse) == 2


# ----------------------------------------------------------------- the real broken model
@pytest.fixture(scope="module")
def broken_model(tmp_path_factory) -> Path:
    """The world model with its final norm weight x 1e4: its loss is so large that perplexity overflows."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kick_hub.engine import WORLD_MODEL_DIR

    out = tmp_path_factory.mktemp("broken") / "broken-world"
    model = AutoModelForCausalLM.from_pretrained(WORLD_MODEL_DIR)
    with torch.no_grad():
        model.model.norm.weight.mul_(1e4)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(WORLD_MODEL_DIR).save_pretrained(out)
    return out


def test_evaluate_broken_model_writes_strict_json(broken_model, tmp_path, capsys):
    from kick_hub.cli import main

    out = tmp_path / "out.json"
    assert main(["evaluate", "--model", str(broken_model), "--task", "perplexity", "--limit", "20",
                 "--output", str(out)]) == 0
    assert "perplexity  perplexity  inf" in capsys.readouterr().out
    doc = strict_load(out.read_text())
    ppl = doc["results"]["perplexity"]
    assert ppl["perplexity"] is None and math.isfinite(ppl["nll"]) and ppl["nll"] > 709  # exp(709+) overflows
    assert doc["non_finite"]["/results/perplexity/perplexity"] == "inf"
    assert io.loads(out.read_text())["results"]["perplexity"]["perplexity"] == INF


def test_bench_broken_model(broken_model, tmp_path, capsys):
    from kick_hub.cli import main

    run_dir = tmp_path / "run"
    assert main(["bench", "--model", str(broken_model), "--run-dir", str(run_dir), "--methods", "magnitude",
                 "--sparsities", "0.5", "--patterns", "--bits", "--tasks", "perplexity", "factoid-qa",
                 "--limit", "4"]) == 0
    store = Store(run_dir, None)
    assert store.scores()["dense"]["perplexity"]["perplexity"] == INF
    store.close()
    for path in [run_dir / "findings.json", *sorted((run_dir / "lm_eval").glob("*.json"))]:
        strict_load(path.read_text())
    md = (run_dir / "report.md").read_text()
    dense_row = next(line for line in md.splitlines() if line.startswith("| dense |"))
    assert "| ∞ (dense ∞) |" in dense_row and "# LLM-KICK sweep: broken-world" in md
    assert str(broken_model) not in md + (run_dir / "report.html").read_text()
