"""Every per-task table agrees with the task declarations (``kick_hub.tasks.specs.SPECS``): each is keyed by exactly
the task ids, or by a stated subset, so a task added in one place and missed in another fails here rather than
silently (no standard errors, no lm-eval metrics, no judge prompts)."""

from __future__ import annotations

import pytest

from kick_hub import tasks
from kick_hub.bench import analysis
from kick_hub.harness import functions
from kick_hub.hub.tasks import MODULES_DIR, task_id
from kick_hub.scoring import judge, stats
from kick_hub.tasks import SPECS, TASK_NAMES
from kick_hub.world.export import build_files
from kick_hub.world.generate import World, WorldConfig

pytestmark = pytest.mark.unit

GENERATED = tuple(t for t, s in SPECS.items() if s.prompts)  # every task but perplexity (log-likelihood of a text)
JUDGED = ("icsum", "instruction-following")


def test_task_ids_are_the_declarations():
    assert TASK_NAMES == tuple(SPECS) and all(s.id == t for t, s in SPECS.items())
    assert set(TASK_NAMES) - set(GENERATED) == {"perplexity"}
    for s in SPECS.values():  # lm-eval metrics only for protocols the task has
        assert set(s.lm_eval_metrics) <= set(s.protocols)


def test_task_modules_have_the_contract():
    """``tasks.registry()``: one module per task, holding its declaration and the functions the engine calls."""
    reg = tasks.registry()
    assert tuple(reg) == TASK_NAMES
    for t, module in reg.items():
        assert module.SPEC is SPECS[t]
        assert callable(module.run)
        if t in GENERATED:  # a task whose model reads a prompt builds it and scores the outputs
            assert callable(module.prompt) and callable(module.score)


def test_evaluate_module_folder_per_task():
    folders = {task_id(d) for d in MODULES_DIR.iterdir() if d.is_dir() and not d.name.startswith(("_", "."))}
    assert folders == set(TASK_NAMES)
    for t in TASK_NAMES:
        assert (MODULES_DIR / t.replace("-", "_") / f"{t.replace('-', '_')}.py").is_file()


def test_world_export_holds_every_task_set():
    """The world writes each task's first data folder (and ``<folder>-heldout`` for tasks declaring a held-out set)."""
    top = {path.split("/")[0] for path in build_files(World(WorldConfig(seed=0)))} - {"world.json"}
    want = {s.sources.folders[0] for s in SPECS.values()}
    want |= {s.sources.folders[0] + "-heldout" for s in SPECS.values() if s.sources.heldout}
    assert top == want


def test_standard_error_tables_cover_every_reported_metric():
    """``stats.FIELDS`` is keyed by every task but perplexity (whose series come from each text's NLL and tokens);
    every metric a task reports has a per-example series, so it gets a standard error."""
    assert tuple(stats.FIELDS) == GENERATED
    assert stats.DIFFERENCES == {("icra-qa", "open_minus_closed_exact_match"): ("score", "closed_book_score")}
    for t, s in SPECS.items():
        fields = set(s.stat_fields.values()) | {f for ab in s.stat_differences.values() for f in ab}
        samples = [{"id": k, **{f: float(k) for f in fields}, "nll": 2.0 + k, "tokens": 4, "output": f"a b c {k}",
                    "judge": {"overall": 5}} for k in range(3)]
        assert s.metric in s.metrics
        for m in (*s.metrics, *s.stat_fields, *s.stat_differences):
            series = stats.series(t, m, samples)
            assert series is not None and series.n == 3, (t, m)
        assert s.stat_fields.get(s.metric, "score") == "score"  # a sample's ``score`` is its headline metric


def test_judge_tables_are_the_judged_tasks():
    assert stats.JUDGED == JUDGED == analysis.JUDGED
    assert tuple(judge.TASK_PROMPTS) == JUDGED
    assert judge.TASK_PROMPTS == {"icsum": ("summary-v1",), "instruction-following": ("pairwise-v1", "single-v1")}
    names = set(judge.prompt_names())
    for t, s in SPECS.items():
        assert judge.task_prompts(t) == s.judge_prompts
        assert s.judge_prompt == (s.judge_prompts[0] if s.judge_prompts else None)
        for p in s.judge_prompts:
            assert p in names and judge.check_task_prompt(t, p) == p
    with pytest.raises(KeyError):
        judge.task_prompts("no-such-task")


def test_lm_eval_metrics_per_task_and_protocol():
    """``harness.functions.METRICS`` has every protocol of every generated task (perplexity is exported as lm-eval's
    own loglikelihood_rolling task), and each metric is one ``score`` reports per document."""
    from kick_hub.tasks import records as task_records

    assert set(functions.METRICS) == {(t, p) for t in GENERATED for p in SPECS[t].protocols}
    for (t, p), metrics in functions.METRICS.items():
        records = task_records.load(t, "world")[:3]
        outputs = [r["answer"] if t == "mcq-reasoning" else "the answer" for r in records]
        _, per_example = functions.score(t, p, "main", records, outputs)
        assert len(per_example) == 3
        for row in per_example:
            assert set(metrics) <= set(row), (t, p)


def test_report_roles():
    """The report's headline per task and the findings' roles: one closed-book task, in-context tasks with claims."""
    assert tuple(analysis.HEADLINE) == TASK_NAMES
    assert analysis.KNOWLEDGE == ("factoid-qa", "mcq-reasoning")
    roles = {t: s.finding.role for t, s in SPECS.items() if s.finding}
    assert roles == {"factoid-qa": "closed-book", "icra-qa": "in-context", "icsum": "in-context"}
    for t, s in SPECS.items():
        if s.finding:
            assert s.finding.what and bool(s.finding.claim) == (s.finding.role == "in-context")
