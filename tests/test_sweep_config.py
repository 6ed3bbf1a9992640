"""A sweep's settings as one value (``bench.SweepConfig``) and ``kick bench`` as a function (``bench.run_bench``):
the checks made once when the value is built, the lock the sweep needs, and the library giving what the command
line prints."""

import dataclasses
import pickle
from pathlib import Path

import pytest

from kick_hub.bench import BenchResult, SweepConfig, plan, run_bench, sweep

CELLS = plan.plan(["magnitude"], [0.5], [], [])  # dense, magnitude-50


@pytest.mark.unit
@pytest.mark.parametrize("changes, message", [
    ({"keep_variants": "some"}, "keep-variants: must be one of ['all', 'none', 'pushed'], got 'some'"),
    ({"keep_variants": "pushed"}, "keep-variants: 'pushed' deletes each variant once --push has uploaded it"),
    ({"keep_variants": "none", "push": "org"}, "keep-variants: 'none' deletes each variant once it is scored"),
    ({"executor": "dask"}, "executor: must be one of ['local', 'ray'], got 'dask'"),
    ({"executor": "ray", "threads": 2}, "threads: under --executor ray each cell runs on --cell-cpus torch threads"),
    ({"ray_address": "auto", "cell_retries": 0},
     "executor: --ray-address, --cell-retries applies to --executor ray only; this run's executor is 'local'"),
    ({"executor": "ray", "cell_cpus": 0}, "cell-cpus: must be a positive number, got 0"),
    ({"executor": "ray", "cell_gpus": -1}, "cell-gpus: must be 0 or more, got -1"),
    ({"executor": "ray", "cell_retries": -1}, "cell-retries: must be 0 or more, got -1"),
    ({"mcq_protocols": ["logprob"], "tasks": ["mcq-reasoning"]},
     "mcq-protocols: each must be one of ['loglik', 'generate'], got ['logprob']"),
    ({"mcq_protocols": ["generate"]},
     "mcq-protocols: applies to mcq-reasoning only, which is not among the selected tasks (factoid-qa)"),
])
def test_each_bad_setting_is_refused_when_the_config_is_built(changes, message, tmp_path):
    base = dict(model="world", run_dir=tmp_path / "run", cells=CELLS, tasks=["factoid-qa"])
    with pytest.raises(ValueError) as e:
        SweepConfig(**{**base, **changes})
    assert str(e.value).startswith(message)
    good = SweepConfig(**base)
    with pytest.raises(ValueError) as again:  # a copy with changes is checked too
        good.replace(**changes)
    assert str(again.value) == str(e.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.unit
def test_a_config_is_one_frozen_picklable_value(tmp_path):
    config = SweepConfig("world", str(tmp_path), CELLS, ["factoid-qa", "mcq-reasoning"],
                         mcq_protocols=["generate", "loglik"], executor="ray", cell_cpus=2)
    assert config.run_dir == tmp_path and config.cells == tuple(CELLS)
    assert config.tasks == ("factoid-qa", "mcq-reasoning") and config.mcq_protocols == ("generate", "loglik")
    assert config.protocols == ["generate", "loglik"]  # as evaluate and the store's task settings take them
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.force = True
    assert pickle.loads(pickle.dumps(config)) == config  # what a Ray worker is sent
    assert config.replace(progress=False).progress is False and config.progress is True


@pytest.mark.unit
def test_the_sweep_runs_only_under_the_run_dirs_lock(tmp_path):
    config = SweepConfig("world", tmp_path / "run", CELLS, ["factoid-qa"])
    with pytest.raises(RuntimeError, match=r"sweep.execute: call it inside sweep.hold\("):
        sweep.execute(config)
    assert not (tmp_path / "run").exists()


def test_run_bench_gives_what_kick_bench_prints(tmp_path):
    """The library run and the command line: the same lines (the run dir aside), the same report and scores."""
    from kick_hub.bench.store import Store
    from tests.kick_runner import kick

    lines: list[str] = []
    config = SweepConfig("world", tmp_path / "lib", CELLS, ["factoid-qa"], limit=4, progress=False)
    result = run_bench(config, log=lines.append)
    assert isinstance(result, BenchResult) and result.exit_status == 0
    assert result.report == tmp_path / "lib" / "report.md" and result.html == tmp_path / "lib" / "report.html"
    assert result.store == tmp_path / "lib" / "results.sqlite" and result.store.exists()
    assert (result.failed, result.pushed, result.results, result.invalid) == ([], {}, None, {})
    assert lines[-1] == f"report: {result.report} and {result.html}"

    cli = kick("bench", "--run-dir", tmp_path / "cli", "--methods", "magnitude", "--sparsities", "0.5",
               "--patterns", "--bits", "--tasks", "factoid-qa", "--limit", "4", check=True)
    assert cli.stdout == "".join(f"{line}\n" for line in lines).replace(str(tmp_path / "lib"),
                                                                         str(tmp_path / "cli"))

    def scores(run_dir: Path) -> dict:
        store = Store.open_readonly(run_dir)
        try:
            return store.scores()
        finally:
            store.close()

    assert scores(tmp_path / "lib") == scores(tmp_path / "cli")
    md = [(tmp_path / d / "report.md").read_text().replace(str(tmp_path / d), "RUN") for d in ("lib", "cli")]
    assert md[0] == md[1]
    # a second run has nothing left to do: the same report again, under the same lock-sweep-report order
    assert run_bench(config).report.read_text() == (tmp_path / "lib" / "report.md").read_text()
