"""What ``kick world info`` reports, and how the shipped model's scores are measured (``scores.json``)."""

from __future__ import annotations

import math
from pathlib import Path

from kick_hub.io import dumps, loads
from kick_hub.world.generate import World, WorldConfig

SCORES_FILE = "scores.json"
# Dense targets of the shipped model on the main split (greedy).
TARGETS = {"factoid-qa": ("exact_match", 0.90), "mcq-reasoning": ("accuracy", 0.80), "icra-qa": ("exact_match", 0.80)}


def model_dir() -> Path:
    """The shipped world model's directory (``kick_hub/world/model``, ``models.WORLD_MODEL_DIR``); it may not
    exist yet (before ``kick world train``)."""
    from kick_hub.models import WORLD_MODEL_DIR

    return WORLD_MODEL_DIR


def info(config: WorldConfig | None = None) -> dict:
    """World sizes, model directory, parameter count and the measured scores (no model is loaded)."""
    from safetensors import safe_open

    path = model_dir()
    params = 0
    weights = path / "model.safetensors"
    if weights.exists():
        with safe_open(weights, "pt") as f:
            params = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    scores_path = path / SCORES_FILE
    scores = loads(scores_path.read_text())["scores"] if scores_path.exists() else {}
    world = World(config or WorldConfig())
    return {"model_dir": str(path), "params": params, "scores": scores, "world": world.sizes(),
            "seed": world.config.seed}


def format_info(data: dict) -> str:
    """Plain-text ``kick world info``: the world sizes, the model directory and parameter count, then one line per
    task of measured scores (4 decimals), each task with a dense target (``TARGETS``) marked met or NOT met.
    ``data`` is what ``info`` returns; a missing key raises KeyError."""
    lines = [f"world (seed {data['seed']}): " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in
                                                          data["world"].items()),
             f"model: {data['model_dir']} ({data['params']:,} parameters)"]
    for task, metrics in data["scores"].items():
        line = f"  {task:<28}" + "  ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        if task in TARGETS:
            metric, target = TARGETS[task]
            line += f"   target {metric} >= {target}: {'met' if metrics.get(metric, 0) >= target else 'NOT met'}"
        lines.append(line)
    return "\n".join(lines)


def measure(path: str, limit: int | None = None, batch_size: int = 32) -> dict:
    """Evaluate a world model on every task (main split, plus the held-out paraphrase split of the tasks that have
    one: factoid-qa and mcq-reasoning) and store ``scores.json`` beside it."""
    from kick_hub.backends import make_engine
    from kick_hub import versions
    from kick_hub.evaluation import evaluate
    from kick_hub.tasks import SPECS

    engine = make_engine(path, batch_size=batch_size)
    main = evaluate(engine, "all", "world", limit)["results"]
    heldout = evaluate(engine, [t for t, s in SPECS.items() if s.sources.heldout], "world-heldout", limit)["results"]
    scores = {t: {m: r[m] for m in SPECS[t].metrics if m in r} for t, r in main.items()}
    scores.update({f"{t}-heldout": {m: r[m] for m in SPECS[t].metrics if m in r} for t, r in heldout.items()})
    payload = {"scores": scores, "limit": limit, "n": {t: r["n"] for t, r in main.items()}, "versions": versions()}
    (Path(path) / SCORES_FILE).write_text(dumps(payload, indent=2) + "\n")
    return scores
