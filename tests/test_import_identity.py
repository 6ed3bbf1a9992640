"""Decoding and precision are part of an imported cell's identity: real lm-eval 0.4.13 runs of the world model
that sampled (``--gen_kwargs do_sample=True,temperature=3.0``) are refused naming the field unless asked for and
labelled, the dtype of ``--model_args`` is recorded, and a variant at another dtype than the stored results is
refused; an import's records match a kick bench store's data digest."""

import sqlite3

import pytest

from kick_hub.bench.store import FILENAME, Store
from tests.kick_runner import kick

pytest.importorskip("lm_eval")

N = 4
TASK = "llmkick_factoid_qa"


def lm_eval(model: str, include, out, dtype: str = "float32", gen_kwargs: str | None = None):
    """lm-eval 0.4.13's ``simple_evaluate`` on the CPU with an ``EvaluationTracker`` writing what its command line
    writes; returns the folder holding the results and samples."""
    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    tracker = EvaluationTracker(output_path=str(out))
    results = simple_evaluate(model="hf", model_args=f"pretrained={model},dtype={dtype}", tasks=[TASK], batch_size=4,
                              device="cpu", limit=N, log_samples=True, evaluation_tracker=tracker,
                              gen_kwargs=gen_kwargs, task_manager=TaskManager(include_path=str(include),
                                                                              include_defaults=False))
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    tracker.save_results_samples(task_name=TASK, samples=samples[TASK])
    (folder,) = [p.parent for p in out.rglob("results_*.json")]
    return folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from kick_hub.harness.export import export

    out = tmp_path_factory.mktemp("tasks")
    export(out, "world")
    return out


@pytest.fixture(scope="module")
def world_dir():
    from kick_hub.engine import resolve_model

    return resolve_model("world")


def cell(run_dir, label: str) -> tuple[str, float, str]:
    store = Store.open_readonly(run_dir)
    try:
        spec = {v["label"]: v["spec"] for v in store.variants()}[label]
        return spec, store.scores()[label]["factoid-qa"]["exact_match"], store.settings()["dtype"]
    finally:
        store.close()


def test_a_sampled_run_is_refused_unless_asked_for_and_labelled(exported, world_dir, tmp_path):
    sampled = lm_eval(world_dir, exported, tmp_path / "sampled", gen_kwargs="do_sample=True,temperature=3.0")
    run_dir = tmp_path / "run"
    code, _, err = kick("import-lm-eval", str(sampled), "--run-dir", str(run_dir), "--label", "dense")
    assert code == 2
    assert (f"kick: error: config.gen_kwargs.do_sample: {sampled}/" in err and
            "lm-eval did not decode greedily (do_sample=True, temperature=3.0)" in err and "--allow-sampling" in err)
    assert not (run_dir / FILENAME).exists()
    code, _, err = kick("import-lm-eval", str(sampled), "--run-dir", str(run_dir), "--label", "dense",
                        "--allow-sampling")
    assert code == 2 and "label: --allow-sampling imports a non-greedy run" in err and "'dense'" in err
    assert not (run_dir / FILENAME).exists()
    code, _, err = kick("import-lm-eval", str(sampled), "--run-dir", str(run_dir), "--label",
                        "dense-sampled", "--allow-sampling")
    assert code == 0, err
    spec, _, dtype = cell(run_dir, "dense-sampled")
    assert '"decoding":{"do_sample":true,"temperature":3.0}' in spec.replace(" ", "") and dtype == "float32"


def test_a_variant_at_another_dtype_than_the_stored_dense_is_refused(exported, world_dir, tmp_path):
    from kick_hub.compress import CompressSpec, make_variant

    run_dir = tmp_path / "run"
    dense = lm_eval(world_dir, exported, tmp_path / "dense-bf16", dtype="bfloat16")
    code, _, err = kick("import-lm-eval", str(dense), "--run-dir", str(run_dir), "--label", "dense")
    assert code == 0, err
    assert cell(run_dir, "dense")[2] == "bfloat16"
    variant = make_variant("world", CompressSpec(method="magnitude", sparsity=0.5), tmp_path / "magnitude-50",
                           progress=False)
    fp32 = lm_eval(str(variant), exported, tmp_path / "variant-fp32", dtype="float32")
    code, _, err = kick("import-lm-eval", str(fp32), "--run-dir", str(run_dir), "--label", "magnitude-50")
    assert code == 2
    assert (f"config.model_args.dtype: the lm-eval run loaded the model as float32, but run-dir {run_dir} holds "
            f"results measured in bfloat16") in err
    db = sqlite3.connect(run_dir / FILENAME)
    assert [r[0] for r in db.execute("SELECT label FROM variants")] == ["dense"]
    db.close()
    bf16 = lm_eval(str(variant), exported, tmp_path / "variant-bf16", dtype="bfloat16")
    code, _, err = kick("import-lm-eval", str(bf16), "--run-dir", str(run_dir), "--label", "magnitude-50")
    assert code == 0, err


def test_an_import_beside_kick_bench_results_shares_their_data_digest(exported, tmp_path):
    """A kick bench store of the same data and limit takes an imported variant (the records lm-eval ran are the
    records kick measured on), at the dtype the store leaves open (``auto``)."""
    from kick_hub.cli import main
    from kick_hub.compress import CompressSpec, make_variant

    run_dir = tmp_path / "run"
    assert main(["bench", "--run-dir", str(run_dir), "--methods", "magnitude", "--sparsities", "0.5", "--patterns",
                 "--tasks", "factoid-qa", "--limit", str(N)]) == 0
    variant = make_variant("world", CompressSpec(method="magnitude", sparsity=0.7), tmp_path / "magnitude-70",
                           progress=False)
    run = lm_eval(str(variant), exported, tmp_path / "variant")
    code, _, err = kick("import-lm-eval", str(run), "--run-dir", str(run_dir), "--label", "magnitude-70")
    assert code == 0, err
    store = Store.open_readonly(run_dir)
    assert set(store.scores()) == {"dense", "magnitude-50", "magnitude-70"}
    store.close()


@pytest.mark.parametrize("config, dtype", [
    ({"model_args": "pretrained=m,torch_dtype=torch.float16"}, "float16"),
    ({"model_args": {"pretrained": "m", "dtype": "bf16"}}, "bfloat16"),
    ({"model_args": "pretrained=m"}, "auto"),
])
def test_dtype_is_read_from_model_args(config, dtype):
    from kick_hub.harness.importer import model_dtype

    assert model_dtype(config) == dtype


@pytest.mark.parametrize("task_kwargs, run_kwargs, field", [
    ({"until": ["\n"], "do_sample": False}, None, None),
    ({"until": ["\n"], "do_sample": False, "temperature": 0.7}, None, None),  # do_sample=False: greedy
    ({"until": ["\n"], "temperature": 0.7}, None, f"configs.{TASK}.generation_kwargs.temperature"),
    ({"until": ["\n"], "do_sample": False}, "num_beams=4", "config.gen_kwargs.num_beams"),
    ({"until": ["\n"], "do_sample": "True"}, None, f"configs.{TASK}.generation_kwargs.do_sample"),
])
def test_decoding_names_the_field_that_is_not_greedy(task_kwargs, run_kwargs, field, tmp_path):
    from kick_hub.harness.importer import decoding

    got = decoding({TASK: {"output_type": "generate_until", "generation_kwargs": task_kwargs}},
                   {"gen_kwargs": run_kwargs}, [TASK], tmp_path / "results_x.json")
    assert (got[1] if got else None) == field
