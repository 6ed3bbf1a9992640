"""Distribution fidelity (``kick_hub.scoring.fidelity``) wired end to end: the perplexity task against dense's stored
next-token distributions, ``evaluate``'s task options, the sweep's once-per-run reference, the report, findings,
card and lm-eval-style JSON.

Numbers are llama.cpp's definitions (``llama-perplexity --kl-divergence``); the hand-made case below computes them
by hand on a two-token vocabulary."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch

from kick_hub.bench import analysis, report
from kick_hub.bench.cell import dense_distributions
from kick_hub.bench.store import Store
from kick_hub.evaluation import evaluate
from kick_hub.scoring import fidelity, stats
from kick_hub.tasks import records
from tests.kick_runner import kick

LIMIT = 6  # perplexity texts of the world in the tests' sweeps
SWEEP = ["--methods", "magnitude", "--sparsities", "0.5", "--patterns", "--bits", "--tasks", "perplexity",
         "--limit", str(LIMIT)]


def _texts(n: int = LIMIT) -> list[str]:
    return [r["text"] for r in records.load("perplexity", "world", n)]


# ----------------------------------------------------------------- the numbers
def test_hand_made_two_token_vocabulary():
    """One text read as ids [0, 1, 0]: two scored positions with targets 1 and 0. Dense P and variant Q per
    position are chosen by hand; KL, top-1 agreement, delta-p and the PPL ratio are computed here by hand."""
    p = torch.tensor([[0.6, 0.4], [0.9, 0.1], [0.5, 0.5]]).log()  # the last row predicts past the text: unused
    q = torch.tensor([[0.3, 0.7], [0.8, 0.2], [0.1, 0.9]]).log()
    ids = [[0, 1, 0]]
    kl0 = 0.6 * math.log(0.6 / 0.3) + 0.4 * math.log(0.4 / 0.7)
    kl1 = 0.9 * math.log(0.9 / 0.8) + 0.1 * math.log(0.1 / 0.2)
    scores, per_text = fidelity.summary(fidelity.compare(fidelity.reference([p], ids), [q], ids))
    assert scores["kl_mean"] == pytest.approx((kl0 + kl1) / 2, rel=1e-6)
    assert scores["kl_max"] == pytest.approx(kl0, rel=1e-6)
    assert scores["kl_median"] == pytest.approx((kl0 + kl1) / 2, rel=1e-6)  # two values: their midpoint
    assert scores["top1_agreement"] == 0.5  # position 0: 0 vs 1; position 1: 0 vs 0
    # delta p = Q(y) - P(y): 0.7 - 0.4 at target 1, 0.8 - 0.9 at target 0
    assert scores["delta_p_mean"] == pytest.approx((0.3 - 0.1) / 2, abs=1e-6)
    assert scores["delta_p_rms"] == pytest.approx(math.sqrt((0.3 ** 2 + 0.1 ** 2) / 2), abs=1e-6)
    assert scores["ppl_ratio"] == pytest.approx(math.sqrt((0.4 * 0.9) / (0.7 * 0.8)), rel=1e-6)
    assert scores["kl_positions"] == 2 and "kl_mean_upper" not in scores
    assert "kl_mean_stderr" not in scores  # one text: no standard error (texts are the sampling units)
    assert per_text == [{"kl": pytest.approx(kl0 + kl1, rel=1e-6), "top1_same": 1, "kl_positions": 2}]
    # kept as its top 1 token, the rest is the one other token: the merged KL is the exact KL and so is the bound
    top1, _ = fidelity.summary(fidelity.compare(fidelity.reference([p], ids, top_k=1), [q], ids))
    assert top1["kl_mean"] == pytest.approx(scores["kl_mean"], rel=1e-6)
    assert top1["kl_mean_upper"] == pytest.approx(scores["kl_mean"], rel=1e-6)
    assert {k: top1[k] for k in ("top1_agreement", "delta_p_mean", "ppl_ratio")} == pytest.approx(
        {k: scores[k] for k in ("top1_agreement", "delta_p_mean", "ppl_ratio")})


def test_a_variant_identical_to_dense(world_engine):
    """The same model as dense: KL 0, top-1 agreement 1, delta-p 0, PPL ratio 1, and no flips on a 0/1 task;
    ``evaluate`` records what the reference was measured on, without a local path."""
    texts = _texts()
    ref = fidelity.measure_reference(world_engine, texts, meta={"model": str(world_engine.model.name_or_path)})
    dense = evaluate(world_engine, ["factoid-qa", "perplexity"], limit=LIMIT)
    same = evaluate(world_engine, ["factoid-qa", "perplexity"], limit=LIMIT,
                    task_options={"perplexity": {"reference": ref}})
    ppl = same["results"]["perplexity"]
    assert ppl["kl_mean"] == 0 and ppl["kl_max"] == 0 and ppl["kl_p99"] == 0
    assert ppl["top1_agreement"] == 1 and ppl["delta_p_mean"] == 0 and ppl["delta_p_rms"] == 0
    assert ppl["ppl_ratio"] == 1 and ppl["kl_mean_stderr"] == 0 and ppl["top1_agreement_stderr"] == 0
    assert ppl["kl_positions"] == sum(s["kl_positions"] for s in same["samples"]["perplexity"]) > 0
    assert ppl["perplexity"] == dense["results"]["perplexity"]["perplexity"]
    assert all(s["kl"] == 0 and s["top1_same"] == s["kl_positions"] for s in same["samples"]["perplexity"])
    d = stats.series("factoid-qa", "exact_match", dense["samples"]["factoid-qa"])
    v = stats.series("factoid-qa", "exact_match", same["samples"]["factoid-qa"])
    f = stats.flips(d, v)
    assert (f.right_to_wrong, f.wrong_to_right, f.n) == (0, 0, LIMIT)
    recorded = same["config"]["fidelity"]["perplexity"]
    assert recorded["texts"] == fidelity.texts_digest(texts) and recorded["vocab"] == 2048
    local = str(world_engine.model.name_or_path)
    assert recorded["model"] == "model" and local not in json.dumps(recorded)  # public_name: no local path
    assert "fidelity" not in dense["config"]


def test_fidelity_stderrs_are_the_tasks_own(world_engine, monkeypatch):
    """``evaluate`` adds ``task_stderrs``'s errors without replacing the ones a task computed itself (fidelity's:
    texts as sampling units): a stat field giving kl_mean a per-text series would compute another one."""
    from kick_hub.scoring import stats as stats_mod

    texts = _texts()
    ref = fidelity.measure_reference(world_engine, texts)
    engine = _perturbed(world_engine)
    monkeypatch.setitem(stats_mod.FIELDS, "perplexity", {"kl_mean": "kl"})  # a per-text "kl" series for kl_mean
    out = evaluate(engine, ["perplexity"], limit=LIMIT, task_options={"perplexity": {"reference": ref}})
    scores, _ = fidelity.measure(engine, texts, ref)
    assert out["results"]["perplexity"]["kl_mean_stderr"] == scores["kl_mean_stderr"]
    assert out["results"]["perplexity"]["perplexity_stderr"] > 0  # the others are still added


def _perturbed(world_engine):
    """A second world engine whose weights are magnitude-pruned by half, in memory (a variant without files)."""
    from kick_hub.engine import Engine

    engine = Engine.from_name("world", batch_size=world_engine.batch_size)
    with torch.no_grad():
        for name, w in engine.model.named_parameters():
            if w.ndim == 2 and "embed" not in name:
                w[w.abs() <= w.abs().flatten().kthvalue(w.numel() // 2).values] = 0
    return engine


def test_invalid_logits_void_the_fidelity_numbers(world_engine):
    """A model whose logits are NaN: ``mark_invalid`` voids every fidelity score and per-text number too."""
    from kick_hub.engine import Engine

    ref = fidelity.measure_reference(world_engine, _texts())
    engine = Engine.from_name("world", batch_size=world_engine.batch_size)
    with torch.no_grad():
        engine.model.get_output_embeddings().weight[0, 0] = math.nan
    out = evaluate(engine, ["perplexity"], limit=LIMIT, task_options={"perplexity": {"reference": ref}})
    ppl = out["results"]["perplexity"]
    assert ppl["non_finite_logits"] > 0
    assert all(ppl[k] is None for k in analysis.FIDELITY if k in ppl and k != "kl_positions")
    assert ppl["kl_mean"] is None and ppl["top1_agreement"] is None and ppl.get("kl_mean_stderr") is None
    for s in out["samples"]["perplexity"]:
        assert s["invalid"] and "kl" not in s and "top1_same" not in s


def test_topk_bounds_hold_against_the_full_computation(world_engine):
    """On the world model, a pruned variant against dense kept as its top 16 tokens per position: at every
    position KL_16 <= KL <= the upper bound (module docstring of ``scoring.fidelity``), the bound is not trivially
    tight, and top-1 agreement, delta-p and the PPL ratio are exactly the full computation's."""
    texts = _texts()
    ids = [world_engine.token_ids(t) for t in texts]
    dense = world_engine.next_token_logprobs(texts)
    variant = _perturbed(world_engine).next_token_logprobs(texts)
    full = fidelity.compare(fidelity.reference(dense, ids), variant, ids)
    top = fidelity.compare(fidelity.reference(dense, ids, top_k=16), variant, ids)
    assert not full.truncated and top.truncated
    assert (top.kl <= full.kl + 1e-9).all() and (full.kl <= top.kl_upper + 1e-9).all()
    assert (top.kl < full.kl - 1e-9).any() and (top.kl_upper > full.kl + 1e-9).any()
    assert full.kl.mean() > 1e-3  # the variant really differs
    a, b = fidelity.summary(full)[0], fidelity.summary(top)[0]
    assert {k: b[k] for k in ("top1_agreement", "delta_p_mean", "delta_p_rms", "ppl_ratio")} == pytest.approx(
        {k: a[k] for k in ("top1_agreement", "delta_p_mean", "delta_p_rms", "ppl_ratio")}, rel=1e-12)
    assert b["kl_mean"] <= a["kl_mean"] <= b["kl_mean_upper"]


# ----------------------------------------------------------------- storage and refusals
@pytest.mark.parametrize("top_k", [None, 5])
def test_save_and_load_round_trip(tmp_path, world_engine, top_k):
    ref = fidelity.measure_reference(world_engine, _texts(3), meta={"model": "world", "batch_size": 32},
                                     top_k=top_k)
    path = fidelity.save_reference(ref, tmp_path / "d.safetensors")
    back = fidelity.load_reference(path)
    assert back.meta == ref.meta == fidelity.stored_meta(path)
    assert back.truncated == (top_k is not None) and back.vocab == ref.vocab == 2048
    assert back.offsets == ref.offsets
    for name in ("logprobs", "rest", "targets", "target_logprobs"):
        assert torch.equal(getattr(back, name), getattr(ref, name)), name
    assert (back.indices is None) == (ref.indices is None)
    if top_k:
        assert torch.equal(back.indices, ref.indices) and back.logprobs.shape[1] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["d.safetensors"]  # no temp file left


def test_a_file_that_is_not_dense_distributions_is_refused(tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(ValueError, match="not a kick-hub dense-distributions file"):
        fidelity.load_reference(other)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not safetensors at all")
    with pytest.raises(ValueError, match="cannot read the dense distributions"):
        fidelity.load_reference(garbage)
    assert fidelity.stored_meta(other) is None and fidelity.stored_meta(garbage) is None
    assert fidelity.stored_meta(tmp_path / "missing") is None


def test_another_tokenizer_or_other_texts_are_refused(world_engine):
    """Texts read as other token ids (another tokenizer) cannot pair positions; a vocabulary of another size, other
    texts than the reference's, and an unknown task option are refused too, each naming what differs."""
    texts = _texts(3)
    ids = [world_engine.token_ids(t) for t in texts]
    dists = world_engine.next_token_logprobs(texts)
    ref = fidelity.reference(dists, ids)
    other_ids = [[min(b, 2047) for b in t.encode()][:len(i)] for t, i in zip(texts, ids)]  # bytes as tokens
    with pytest.raises(ValueError, match="another tokenizer"):
        fidelity.compare(ref, dists, other_ids)
    with pytest.raises(ValueError, match="vocabulary: the variant has 1000 tokens, the dense reference 2048"):
        fidelity.compare(ref, [d[:, :1000] for d in dists], ids)
    measured = fidelity.measure_reference(world_engine, texts)
    with pytest.raises(ValueError, match="texts: not the texts the dense reference was measured on"):
        fidelity.measure(world_engine, _texts(4)[1:], measured)
    with pytest.raises(ValueError, match="task-options: perplexity takes no option 'refrence'; its options: "
                                         "reference"):
        evaluate(world_engine, ["perplexity"], limit=2, task_options={"perplexity": {"refrence": measured}})
    with pytest.raises(ValueError, match="task-options: 'factoid-qa' is not among the tasks run"):
        evaluate(world_engine, ["perplexity"], limit=2, task_options={"factoid-qa": {}})


def test_mcq_protocols_as_a_task_option(world_engine):
    """``mcq_protocols`` and ``task_options["mcq-reasoning"]["protocols"]`` are one setting."""
    a = evaluate(world_engine, ["mcq-reasoning"], limit=4, mcq_protocols=["loglik", "generate"])
    b = evaluate(world_engine, ["mcq-reasoning"], limit=4,
                 task_options={"mcq-reasoning": {"protocols": ["loglik", "generate"]}})
    assert a["results"] == b["results"] and b["config"]["mcq_protocols"] == ["loglik", "generate"]
    with pytest.raises(ValueError, match="mcq-protocols: given as"):
        evaluate(world_engine, ["mcq-reasoning"], limit=4, mcq_protocols=["loglik"],
                 task_options={"mcq-reasoning": {"protocols": ["generate"]}})


# ----------------------------------------------------------------- the sweep
@pytest.fixture()
def passes(monkeypatch):
    """Counts ``next_token_logprobs`` calls per model (its directory's name: ``model`` for dense, the variant's
    label otherwise) and ``measure_reference`` calls, on the real backend class, in this process."""
    from kick_hub.backends.transformers import TransformersEngine

    counts: dict[str, int] = {}
    original, measure = TransformersEngine.next_token_logprobs, fidelity.measure_reference

    def counted(self, texts, progress=None):
        key = str(self.model.name_or_path).rstrip("/").rsplit("/", 1)[-1]
        counts[key] = counts.get(key, 0) + 1
        return original(self, texts, progress)

    def reference(*args, **kwargs):
        counts["measure_reference"] = counts.get("measure_reference", 0) + 1
        return measure(*args, **kwargs)

    monkeypatch.setattr(TransformersEngine, "next_token_logprobs", counted)
    monkeypatch.setattr(fidelity, "measure_reference", reference)
    return counts


def test_sweep_computes_dense_once_and_every_cell_reuses_it(tmp_path, passes):
    """``kick bench --tasks perplexity``: dense's distributions computed once (one dense pass besides dense's own
    cell), stored in the run dir, read by every cell; a resumed run with one more cell reuses the file untouched;
    the report, findings, lm-eval JSON and card carry the numbers; ``--force`` moves the file aside."""
    run_dir = tmp_path / "run"
    kick("bench", "--run-dir", run_dir, *SWEEP, check=True)
    # one batch each (6 texts, batch 32): the reference, dense's cell, the variant's cell
    assert passes == {"measure_reference": 1, "model": 2, "magnitude-50": 1}
    path = dense_distributions(run_dir)
    meta = fidelity.stored_meta(path)
    assert {k: meta[k] for k in ("model", "device", "dtype", "batch_size", "vocab", "truncated")} == {
        "model": "world", "device": "auto", "dtype": "auto", "batch_size": 32, "vocab": 2048, "truncated": False}
    assert meta["texts"] == fidelity.texts_digest(_texts())
    stamp = path.stat().st_mtime_ns
    store = Store.open_readonly(run_dir)
    try:
        scores = store.scores()
        rows, _ = analysis.table_data(store)
    finally:
        store.close()
    dense, variant = scores["dense"]["perplexity"], scores["magnitude-50"]["perplexity"]
    assert dense["kl_mean"] == 0 and dense["top1_agreement"] == 1 and dense["ppl_ratio"] == 1
    assert variant["kl_mean"] > 0 and variant["top1_agreement"] < 1 and variant["kl_mean_stderr"] > 0
    assert variant["kl_positions"] == dense["kl_positions"] == dense["tokens"]
    # the variant's numbers are fidelity.measure's on its own model against the stored file
    from kick_hub.engine import Engine

    again, _ = fidelity.measure(Engine.from_name(str(run_dir / "variants" / "magnitude-50"), batch_size=32),
                                _texts(), fidelity.load_reference(path))
    assert {k: variant[k] for k in again} == pytest.approx(again, rel=1e-9)
    row = next(r for r in rows if r["label"] == "magnitude-50")
    assert row["fidelity"]["kl_mean"] == variant["kl_mean"]

    # the outputs: report, findings.json, lm-eval JSON, the card
    md = (run_dir / "report.md").read_text()
    assert "## Distribution fidelity" in md and "KL from dense (nats/token)" in md
    assert report.fidelity_rows([row])[0][1] in md
    findings = json.loads((run_dir / "findings.json").read_text())
    assert findings["fidelity"]["magnitude-50"]["kl_mean"] == variant["kl_mean"]
    assert findings["fidelity"]["dense"]["top1_agreement"] == 1
    lm = json.loads((run_dir / "lm_eval" / "magnitude-50.json").read_text())
    assert lm["results"]["perplexity"]["top1_agreement"] == variant["top1_agreement"]
    assert lm["fidelity"]["kl_p99"] == variant["kl_p99"]
    from kick_hub.hub.card import variant_card

    card = str(variant_card(run_dir / "variants" / "magnitude-50", "org/world-magnitude-50", run_dir))
    assert "Distribution fidelity against dense" in card and report.fidelity_rows([row])[0][2] in card

    # resumed with one more cell: the file is reused as it is, the new cell measured against it
    for k in list(passes):
        passes[k] = 0
    time.sleep(0.01)
    more = [x for a in SWEEP for x in ([a, "0.7"] if a == "0.5" else [a])]
    kick("bench", "--run-dir", run_dir, *more, check=True)
    assert passes.get("measure_reference", 0) == 0 and passes.get("model", 0) == 0
    assert passes["magnitude-70"] == 1 and path.stat().st_mtime_ns == stamp
    store = Store.open_readonly(run_dir)
    try:
        kl70 = store.scores()["magnitude-70"]["perplexity"]["kl_mean"]
    finally:
        store.close()
    assert kl70 > variant["kl_mean"]  # more pruning, further from dense
    status = kick("bench", "--run-dir", run_dir, *SWEEP, "--status", check=True).stdout
    assert "dense_distributions" not in status

    # other settings with --force: the stored results and the distributions move aside together
    kick("bench", "--run-dir", run_dir, *[a if a != str(LIMIT) else "4" for a in SWEEP], "--force", check=True)
    moved = list((run_dir / "superseded").iterdir())
    assert len(moved) == 1 and (moved[0] / "dense_distributions.safetensors").exists()
    assert fidelity.load_reference(moved[0] / "dense_distributions.safetensors").meta["texts"] == meta["texts"]
    assert fidelity.stored_meta(path)["texts"] == fidelity.texts_digest(_texts(4))


def test_a_stale_file_is_recomputed(tmp_path, passes):
    """A dense_distributions file whose meta does not match the run (here: another batch size's) is computed again,
    not read."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ref = fidelity.reference([torch.zeros(2, 2048).log_softmax(-1)], [[1, 2]], meta={"model": "world"})
    fidelity.save_reference(ref, dense_distributions(run_dir))
    kick("bench", "--run-dir", run_dir, *SWEEP, "--batch-size", "4", check=True)
    assert passes["measure_reference"] == 1
    meta = fidelity.stored_meta(dense_distributions(run_dir))
    assert meta["batch_size"] == 4 and meta["texts"] == fidelity.texts_digest(_texts())
