"""The LLM-KICK tasks under lm-evaluation-harness 0.4.13 (kick_hub.harness): the exported YAMLs run by the real
``lm_eval`` CLI on the world model give kick's prompts, greedy outputs and per-example scores; their results import
into a sweep store and push to the loopback Hub with a card showing the numbers; kick's judge scores lm-eval's
logged generations; bad input exits 2 naming the file and field, with nothing written."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chat_server import ChatServer
from tests.kick_runner import hub_kick, kick

pytest.importorskip("lm_eval")

N = 8  # examples per task
TASKS = ["llmkick_factoid_qa", "llmkick_mcq_reasoning", "llmkick_mcq_reasoning_llm_kick", "llmkick_icra_qa",
         "llmkick_icra_qa_closed_book", "llmkick_instruction_following"]


def lm_eval(model: str, include: Path, tasks: list[str], out: Path, limit: int = N, cli: bool = True,
            extra: str = "") -> Path:
    """Run lm-eval 0.4.13 on the CPU in this process (the libraries load once): its command line (``cli``), or the
    calls that command makes (``simple_evaluate`` with an ``EvaluationTracker`` writing the same files) with a task
    manager that skips indexing lm-eval's built-in tasks. Returns the folder holding its results and samples."""
    args = f"pretrained={model},dtype=float32{extra}"
    if cli:
        from lm_eval.__main__ import cli_evaluate

        saved = sys.argv
        sys.argv = ["lm_eval", "--model", "hf", "--model_args", args, "--include_path", str(include), "--tasks",
                    ",".join(tasks), "--limit", str(limit), "--batch_size", "4", "--device", "cpu", "--log_samples",
                    "--output_path", str(out)]
        try:
            cli_evaluate()
        finally:
            sys.argv = saved
    else:
        from lm_eval import simple_evaluate
        from lm_eval.loggers import EvaluationTracker
        from lm_eval.tasks import TaskManager

        tracker = EvaluationTracker(output_path=str(out))
        results = simple_evaluate(model="hf", model_args=args, tasks=tasks, batch_size=4, device="cpu", limit=limit,
                                  log_samples=True, evaluation_tracker=tracker,
                                  task_manager=TaskManager(include_path=str(include), include_defaults=False))
        samples = results.pop("samples")
        tracker.save_results_aggregated(results=results, samples=samples)
        for name in results["configs"]:
            tracker.save_results_samples(task_name=name, samples=samples[name])
    (folder,) = [p.parent for p in out.rglob("results_*.json")]
    return folder


def samples(folder: Path, task: str) -> list[dict]:
    (file,) = folder.glob(f"samples_{task}_[0-9]*.jsonl")
    return sorted((json.loads(line) for line in file.read_text().splitlines()), key=lambda s: s["doc_id"])


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    from kick_hub.harness.export import export

    out = tmp_path_factory.mktemp("tasks")
    export(out, "world")
    return out


@pytest.fixture(scope="module")
def world_run(tmp_path_factory, exported) -> Path:
    from kick_hub.engine import resolve_model

    return lm_eval(resolve_model("world"), exported, TASKS, tmp_path_factory.mktemp("lm-eval-world"))


def test_export_needs_no_lm_eval_and_carries_kick_settings(tmp_path):
    code = ("import sys; from kick_hub.harness.export import export; export(sys.argv[1], 'world'); "
            "assert 'lm_eval' not in sys.modules, 'export imported lm_eval'")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=120)
    factoid = (tmp_path / "llmkick_factoid_qa.yaml").read_text()
    assert 'until: ["\\n"]\n  max_gen_toks: 16\n  do_sample: false' in factoid  # SPECS["factoid-qa"]
    mcq = (tmp_path / "llmkick_mcq_reasoning.yaml").read_text()
    assert "output_type: multiple_choice" in mcq and 'target_delimiter: " "' in mcq and "num_fewshot: 0" in mcq
    assert "max_gen_toks: 1\n" in (tmp_path / "llmkick_mcq_reasoning_llm_kick.yaml").read_text()
    group = (tmp_path / "llmkick.yaml").read_text()
    assert group.count("  - llmkick_") == 6 and "llm_kick" not in group  # 5 tasks, icra-qa in 2 parts
    assert "--apply_chat_template" in (tmp_path / "llmkick_icsum.yaml").read_text()
    assert "from kick_hub.harness.functions import" in (tmp_path / "utils.py").read_text()


def test_lm_eval_gives_kick_evaluate_per_example(world_run):
    """Same prompt, same greedy output, same score for every example of factoid QA, MCQ under both protocols
    (log-likelihood of the letters, one generated token) and in-context QA (open and closed book)."""
    from kick_hub.engine import Engine
    from kick_hub.evaluation import evaluate
    from kick_hub.harness import by_name
    from kick_hub.harness.functions import prediction
    from kick_hub.tasks.specs import SPECS

    engine = Engine.from_name("world", batch_size=4)
    kick_out = {"default": evaluate(engine, ["factoid-qa", "mcq-reasoning", "icra-qa"], "world", N),
                "llm-kick": evaluate(engine, ["mcq-reasoning"], "world", N, "llm-kick")}
    compared = 0
    for name in TASKS[:5]:
        t = by_name()[name]
        mine, theirs = kick_out[t.protocol]["samples"][t.task], samples(world_run, name)
        assert len(mine) == len(theirs) == N
        closed = t.part == "closed_book"
        for k, s in zip(mine, theirs):
            assert json.loads(s["doc"]["record"])["id"] == k["id"]
            args = s["arguments"]["gen_args_0"]
            if not closed:
                assert args["arg_0"] == k["prompt"]
            if t.task == "mcq-reasoning" and t.protocol == "default":
                assert [a["arg_1"] for a in s["arguments"].values()] == [" A", " B", " C", " D"]
            got = prediction(t.task, t.protocol, s["filtered_resps"])
            want = k["closed_book_output"] if closed else k["output"]
            assert (got.strip() if t.task == "icra-qa" else got) == want  # icra-qa's outputs are stored stripped
            assert s[s["metrics"][0]] == (k["closed_book_score"] if closed else k["score"])
            compared += 1
    assert compared == 5 * N
    # the importer's rescoring of lm-eval's outputs gives kick's task results (kick's also carry standard errors)
    from kick_hub.harness.importer import read

    imported = read(world_run).results
    for task in ("factoid-qa", "mcq-reasoning", "icra-qa"):
        assert imported[task] == {k: v for k, v in kick_out["default"]["results"][task].items() if k in imported[task]}
        assert set(imported[task]) >= {"n", *SPECS[task].metrics}
    # hand-checked on the world model's first 8 examples (the same under both harnesses, asserted above)
    assert kick_out["default"]["results"]["factoid-qa"]["exact_match"] == 1.0
    assert kick_out["default"]["results"]["icra-qa"]["closed_book_exact_match"] == 0.0


def test_import_report_and_push_round_trip(world_run, exported, tmp_path, hub):
    """lm_eval --log_samples -> kick import-lm-eval (dense, then a kick variant) -> kick bench --status -> kick push:
    the card on the loopback Hub shows the imported numbers beside dense."""
    from kick_hub.bench.store import Store
    from kick_hub.compress import CompressSpec, make_variant

    run_dir = tmp_path / "run"
    code, _, err = kick("import-lm-eval", str(world_run), "--run-dir", str(run_dir), "--label", "dense")
    assert code == 0, err
    store = Store(run_dir, None)
    scores, meta = store.scores()["dense"], store.meta()
    mcq_samples = store.samples("dense", "mcq-reasoning")
    store.close()
    assert store.model == "world" and meta["data"] == "world" and meta["limit"] == N and meta["protocol"] == "default"
    assert set(scores) == {"factoid-qa", "mcq-reasoning", "icra-qa", "instruction-following"}
    mcq = [json.loads(s["doc"]["record"])["answer"] for s in samples(world_run, "llmkick_mcq_reasoning")]
    assert [s["reference"] for s in mcq_samples] == mcq and len(mcq_samples) == N
    assert scores["mcq-reasoning"]["accuracy"] == sum(s["accuracy"] for s in samples(
        world_run, "llmkick_mcq_reasoning")) / N
    assert scores["icra-qa"]["open_minus_closed_exact_match"] == 1.0  # open book 1.0, closed book 0.0
    _, status, _ = kick("bench", "--status", "--run-dir", str(run_dir))
    assert "1 cells done" in status and "factoid-qa, icra-qa, instruction-following" in status

    variant = make_variant("world", CompressSpec(method="magnitude", sparsity=0.7), tmp_path / "magnitude-70",
                           progress=False)
    vrun = lm_eval(str(variant), exported, ["llmkick_factoid_qa"], tmp_path / "lm-eval-variant", cli=False)
    code, _, err = kick("import-lm-eval", str(vrun), "--run-dir", str(run_dir), "--label", "magnitude-70")
    assert code == 0, err
    store = Store(run_dir, None)
    variant_em = store.scores()["magnitude-70"]["factoid-qa"]["exact_match"]
    store.close()
    assert variant_em == sum(s["exact_match"] for s in samples(vrun, "llmkick_factoid_qa")) / N
    from kick_hub.space import browse  # the Space's "dense right, variant wrong" browser reads the imported samples

    frame = browse(str(run_dir), "magnitude-70", "factoid-qa", False)
    assert len(frame) == N and list(frame["dense score"]) == [1.0] * N
    from kick_hub.bench import report

    store = Store(run_dir, None)
    text = report.write(store, run_dir).read_text()
    store.close()
    assert "| dense |" in text and "| magnitude-70 |" in text  # the report has both cells
    hub_kick(hub, "push", str(variant), "--repo-id", "test-org/world-magnitude-70", "--run-dir", str(run_dir))
    card = hub.files("test-org/world-magnitude-70")["README.md"].decode()
    row = next(line for line in card.splitlines() if line.startswith("| factoid-qa"))
    assert row.startswith(f"| factoid-qa (knowledge) | exact_match | 1 | {variant_em:.4g} |")
    assert "examples per task: 8" in card and str(tmp_path) not in card


def test_judge_lm_eval_generations(world_run, tmp_path, monkeypatch):
    """kick judge on lm-eval's instruction-following samples: the pairwise judge in both orders; the import carries
    its numbers and each sample's verdict."""
    from kick_hub.bench.store import Store

    world_run = Path(shutil.copytree(world_run, tmp_path / "lm-eval"))
    (file,) = world_run.glob("samples_llmkick_instruction_following_*.jsonl")
    monkeypatch.setenv("OPENAI_API_KEY", "EMPTY")
    with ChatServer(["6 4"]) as server:
        code, _, err = kick("judge", str(file), "--judge", "openai:judge-model", "--judge-base-url",
                            server.url, "--judge-concurrency", "1")
        assert code == 0, err
        assert len(server.requests) == 2 * N  # both orders of each example
    judged = json.loads(next(world_run.glob("judge_llmkick_instruction_following_*.json")).read_text())
    assert judged["scores"] == {"judge_reference": 5.0, "judge_answer": 5.0, "judge_relative": 1.0,
                                "judge_unparsable": 0, "judge_order_disagreement": 1.0}
    run_dir = tmp_path / "run"
    assert kick("import-lm-eval", str(world_run), "--run-dir", str(run_dir), "--label", "dense")[0] == 0
    store = Store(run_dir, None)
    got, first, meta = store.scores()["dense"]["instruction-following"], store.samples(
        "dense", "instruction-following")[0], store.meta()
    store.close()
    assert got["judge_relative"] == 1.0 and first["judge"] == {"reference": 5.0, "answer": 5.0}
    assert meta["judge"] == {"instruction-following": "openai:judge-model, prompt pairwise-v1, both orders"}


def test_bad_input_exits_2_and_writes_nothing(world_run, exported, tmp_path):
    run_dir = tmp_path / "run"
    code, _, err = kick("import-lm-eval", str(exported), "--run-dir", str(run_dir), "--label", "dense")
    assert code == 2 and f"results: {exported} holds no lm-eval results_<time>.json" in err
    code, _, err = kick("import-lm-eval", str(world_run), "--run-dir", str(run_dir), "--label", "dense",
                        "--tasks", "icsum")
    (results,) = world_run.glob("results_*.json")
    assert code == 2 and f"results: {results} has no task 'llmkick_icsum'" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / results.name).write_text(json.dumps({"results": {}, "configs": {}}))
    code, _, err = kick("import-lm-eval", str(broken), "--run-dir", str(run_dir), "--label", "dense")
    assert code == 2 and f"config: {broken / results.name}: missing" in err
    for line in samples(world_run, "llmkick_factoid_qa")[:1]:  # a samples file whose output is not text
        bad = tmp_path / "bad-samples"
        shutil.copytree(world_run, bad)
        (file,) = bad.glob("samples_llmkick_factoid_qa_[0-9]*.jsonl")
        file.write_text(json.dumps({**line, "filtered_resps": [[1.5, True]]}) + "\n")
        code, _, err = kick("import-lm-eval", str(bad), "--run-dir", str(run_dir), "--label", "dense")
        assert code == 2 and f"filtered_resps: {file} line 1: must hold the generated text" in err
    assert not run_dir.exists()
    # a store holding another model's results: refused, the store untouched
    assert kick("import-lm-eval", str(world_run), "--run-dir", str(run_dir), "--label", "dense", "--model",
                "other/model")[0] == 0
    before = (run_dir / "results.sqlite").read_bytes()
    code, _, err = kick("import-lm-eval", str(world_run), "--run-dir", str(run_dir), "--label", "again")
    assert code == 2
    assert "config.model_args.pretrained: the lm-eval run is of model 'world', but run-dir" in err
    assert "holds results for model 'other/model'" in err
    assert (run_dir / "results.sqlite").read_bytes() == before
    code, _, err = kick("judge", str(results), "--judge", "openai:m")
    assert code == 2 and "is not an lm-eval samples file" in err
    code, _, err = kick("lm-eval-tasks", "--output", str(tmp_path / "t"), "--data", str(tmp_path / "nope"))
    assert code == 2 and f"data: '{tmp_path / 'nope'}' is neither" in err and not (tmp_path / "t").exists()


def test_import_checks_samples_against_results(world_run, tmp_path):
    """A samples file that repeats a doc_id, skips one, or counts other than the results file's n-samples is
    refused (exit 2 naming the samples file and the field, nothing written); without n-samples the limit stored is
    the number of samples present, not the full set."""
    from kick_hub.bench.store import Store

    lines = samples(world_run, "llmkick_factoid_qa")
    run_dir = tmp_path / "run"

    def run_with(docs: list[int], counts: dict | None, name: str) -> tuple[int, str, Path, Path]:
        folder = Path(shutil.copytree(world_run, tmp_path / name))
        (file,) = folder.glob("samples_llmkick_factoid_qa_[0-9]*.jsonl")
        file.write_text("".join(json.dumps(lines[i]) + "\n" for i in docs))
        (results,) = folder.glob("results_*.json")
        doc = json.loads(results.read_text())
        assert doc["n-samples"]["llmkick_factoid_qa"] == {"original": 1024, "effective": N}  # lm-eval's --limit 8
        if counts is None:
            del doc["n-samples"]
        else:
            doc["n-samples"]["llmkick_factoid_qa"] = counts
        results.write_text(json.dumps(doc))
        code, _, err = kick("import-lm-eval", str(folder), "--run-dir", str(run_dir), "--label", "dense",
                            "--tasks", "factoid-qa")
        return code, err, file, results

    # the tester's file: 3 lines, doc_id 0 twice; without n-samples, and with n-samples effective 4
    for counts in (None, {"original": 1024, "effective": 4}):
        code, err, file, _ = run_with([0, 1, 0], counts, f"dup-{bool(counts)}")
        assert code == 2 and f"doc_id: {file} line 3: repeats doc_id 0 (first at line 1)" in err
    code, err, file, results = run_with([0, 1, 2], {"original": 1024, "effective": 4}, "short")
    assert code == 2 and (f"n-samples: {file} holds 3 samples of task 'llmkick_factoid_qa', but {results} says "
                          f"n-samples.llmkick_factoid_qa.effective = 4") in err
    code, err, file, _ = run_with([0, 1, 3], None, "gap")
    assert code == 2 and f"doc_id: {file}: holds 3 samples, but not documents 0..2" in err
    code, err, _, results = run_with([0, 1, 2], {"original": "1024", "effective": 3}, "bad-counts")
    assert code == 2 and f"n-samples: {results}: n-samples.llmkick_factoid_qa must hold integer" in err
    assert not run_dir.exists()
    # without n-samples: stored with limit 3 (the samples present) and n 3
    code, err, _, _ = run_with([2, 0, 1], None, "no-counts")
    assert code == 0, err
    store = Store(run_dir, None)
    limit, n = store.task_settings()["factoid-qa"]["limit"], store.scores()["dense"]["factoid-qa"]["n"]
    store.close()
    assert limit == 3 and n == 3


def test_lm_eval_tasks_checks_data(tmp_path):
    """kick lm-eval-tasks loads each task's data before writing: a model folder or an empty folder is refused
    naming --data, a data root without some tasks' folders gets the others (with a note), and a task folder that
    does not load is refused; nothing is written on refusal."""
    from kick_hub.engine import resolve_model
    from kick_hub.world.export import data_dir

    model = resolve_model("world")
    (tmp_path / "empty").mkdir()
    for source in (model, str(tmp_path / "empty")):
        code, _, err = kick("lm-eval-tasks", "--output", str(tmp_path / "t"), "--data", source)
        assert code == 2 and f"data: --data {Path(source).resolve()} holds no LLM-KICK task's data" in err, err
        assert not (tmp_path / "t").exists()
    root = tmp_path / "root"
    shutil.copytree(data_dir() / "freebaseqa", root / "freebaseqa")
    code, _, err = kick("lm-eval-tasks", "--output", str(tmp_path / "t"), "--data", str(root))
    assert code == 0, err
    assert f"note: no mcq-reasoning task written: its data is not in {root}" in err
    written = sorted(p.name for p in (tmp_path / "t").iterdir())
    assert written == ["llmkick.yaml", "llmkick_factoid_qa.yaml", "llmkick_factoid_qa_llm_kick.yaml",
                       "llmkick_llm_kick.yaml", "utils.py"]
    assert "  - llmkick_factoid_qa\nmetadata" in (tmp_path / "t" / "llmkick.yaml").read_text()
    (root / "mmlu").mkdir()  # the task's own folder, holding no MMLU files: bad data, not missing data
    code, _, err = kick("lm-eval-tasks", "--output", str(tmp_path / "t2"), "--data", str(root))
    assert code == 2 and f"data: --data {root}: task mcq-reasoning's data in {root / 'mmlu'} does not load" in err
    assert not (tmp_path / "t2").exists()


def test_judge_checks_paths_before_asking(world_run, tmp_path, monkeypatch):
    """kick judge: a samples file that is not there is said not to exist; an --output that is an existing folder
    is refused naming --output before any judge request."""
    (file,) = world_run.glob("samples_llmkick_instruction_following_*.jsonl")
    code, _, err = kick("judge", str(tmp_path / "nope.jsonl"), "--judge", "openai:m")
    assert code == 2 and f"samples: {tmp_path / 'nope.jsonl'} does not exist" in err
    monkeypatch.setenv("OPENAI_API_KEY", "EMPTY")
    with ChatServer(["6 4"]) as server:
        code, _, err = kick("judge", str(file), "--judge", "openai:judge-model", "--judge-base-url",
                            server.url, "--output", str(tmp_path))
        assert code == 2 and f"output: --output {tmp_path} is an existing folder" in err
        assert server.requests == []
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("source", ["shared", "world-build"])
def test_local_data_formats_load_in_lm_eval(source, shared_data, tmp_path):
    """The tasks exported for a local data root (../shared/data in the datasets' release formats, or the sets
    `kick world build` writes) give lm-eval kick's records and prompts: every record, in kick's order."""
    from lm_eval.tasks import TaskManager, get_task_dict

    from kick_hub import tasks
    from kick_hub.harness import by_name
    from kick_hub.tasks import records as task_records

    root = shared_data
    if source == "world-build":
        root = tmp_path / "world"
        assert kick("world", "build", "--output", str(root))[0] == 0
    assert kick("lm-eval-tasks", "--output", str(tmp_path / "tasks"), "--data", str(root))[0] == 0
    names = {"shared": ["llmkick_factoid_qa", "llmkick_mcq_reasoning", "llmkick_icsum",
                        "llmkick_instruction_following"],
             "world-build": ["llmkick_factoid_qa", "llmkick_mcq_reasoning", "llmkick_icra_qa_closed_book",
                             "llmkick_icsum_llm_kick", "llmkick_instruction_following"]}[source]
    task_dict = get_task_dict(names, TaskManager(include_path=str(tmp_path / "tasks"), include_defaults=False))
    for name in names:
        t, task = by_name()[name], task_dict[name]
        records = task_records.load(t.task, str(root))
        docs = list(task.test_docs())
        assert [json.loads(d["record"]) for d in docs] == json.loads(json.dumps(records))
        module = tasks.get(t.task)
        r = records[0]
        want = {"mcq-reasoning": module.build_prompt(r, 5) if t.task == "mcq-reasoning" else None,
                "icra-qa": f"Answer these questions:\n\nQ: {r.get('question')}\nA:",  # closed book
                "icsum": f"{r.get('story')}\n\n{r.get('reference')}\n\nSummarize the given story in less than 150 "
                         f"words while preserving high coherence, consistency, fluency, and relevance."
                if t.protocol == "llm-kick" else None,  # llm-kick's prompts kept the highlights
                }.get(t.task) or module.prompt(r)
        assert task.doc_to_text(docs[0]) == want


def test_perplexity_import_matches_kick(exported, tmp_path):
    """lm-eval's loglikelihood_rolling with add_bos_token=False scores each text's tokens after BOS, as kick does:
    the imported token-level perplexity equals kick's per text (float noise of the padding aside); with the BOS
    scored as a text token (lm-eval's default for a tokenizer that adds one) the import is refused."""
    from kick_hub.bench.store import Store
    from kick_hub.engine import Engine, resolve_model
    from kick_hub.evaluation import evaluate

    run = lm_eval(resolve_model("world"), exported, ["llmkick_perplexity"], tmp_path / "lm", cli=False,
                  extra=",add_bos_token=False")
    code, _, err = kick("import-lm-eval", str(run), "--run-dir", str(tmp_path / "run"), "--label", "dense")
    assert code == 0, err
    store = Store(tmp_path / "run", None)
    got, texts = store.scores()["dense"]["perplexity"], store.samples("dense", "perplexity")
    store.close()
    want = evaluate(Engine.from_name("world", batch_size=4), ["perplexity"], "world", N)
    assert got["tokens"] == want["results"]["perplexity"]["tokens"] == 308  # the first 8 world texts
    assert got["perplexity"] == pytest.approx(want["results"]["perplexity"]["perplexity"], rel=1e-4)
    for mine, kicks in zip(texts, want["samples"]["perplexity"]):
        assert mine["tokens"] == kicks["tokens"] and mine["score"] == pytest.approx(kicks["score"], rel=1e-4)
    (results,) = run.glob("results_*.json")
    doc = json.loads(results.read_text())
    doc["config"]["model_args"] = doc["config"]["model_args"].replace(",add_bos_token=False", "")  # k=v,... string
    results.write_text(json.dumps(doc))
    code, _, err = kick("import-lm-eval", str(run), "--run-dir", str(tmp_path / "other"), "--label", "dense")
    assert code == 2 and f"config.model_args.add_bos_token: {results}: lm-eval scored the tokenizer's BOS" in err
    assert not (tmp_path / "other").exists()
