"""The model card of a compressed variant: what was done to the model and what LLM-KICK says it cost.

Built with ``huggingface_hub.ModelCardData`` (YAML: base_model, tags, model-index eval results) and a Markdown body
from the variant's manifest plus, when a run dir is given, its results beside the dense baseline.
"""

from __future__ import annotations

from pathlib import Path

from kick_hub import tasks
from kick_hub.compress import QUANT_METHODS
from kick_hub.variant import CALIBRATION_FILE, load_manifest

# model-index dataset ids for the embedded world and for Vicuna-80 (the other tasks use data.HUB_SOURCES)
WORLD_DATASET = "kick-hub/world"
INSTRUCTION_DATASET = "lmsys/vicuna-80"


def _is_hub_id(name: str | None) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not name or name.count("/") != 1 or Path(name).exists():
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def compression_tags(manifest: dict) -> list[str]:
    spec = manifest["spec"]
    tags = ["llm-kick", "kick-hub", spec["method"]]
    if spec["method"] in QUANT_METHODS:
        tags += ["quantized", f"{spec['bits']}-bit"] if spec.get("bits") else ["quantized"]
    else:
        tags.append("pruned")
        if spec.get("pattern"):
            tags.append(f"{spec['pattern'].replace(':', 'of')}-sparsity")
        elif spec.get("sparsity") is not None:
            tags.append(f"sparsity-{round(spec['sparsity'] * 100)}")
    return tags


def describe(spec: dict) -> str:
    """One phrase for the compression setting: '50 % unstructured', '2:4 semi-structured', '4-bit (group 128)'."""
    if spec["method"] in QUANT_METHODS:
        group = f", group size {spec['group_size']}" if spec["method"] == "gptq" else ""
        return f"{spec.get('bits')}-bit{group}"
    if spec.get("pattern"):
        return f"{spec['pattern']} semi-structured sparsity"
    return f"{spec['sparsity']:.0%} unstructured sparsity"


def dataset_for(task: str, data: str | None) -> tuple[str, str | None, str]:
    """(dataset id, config, display name) of the data a task was scored on, for the model-index (the Hub groups
    results by task type + dataset + config, so the world's tasks each get their own config)."""
    from kick_hub.data import HUB_SOURCES

    kind = tasks.get(task).SPEC.kind
    if data in (None, "None", "world", "world-heldout"):
        heldout = ", held-out phrasings" if data == "world-heldout" else ""
        return WORLD_DATASET, task, f"kick-hub world ({task}{heldout})"
    if data.startswith("hub:"):
        return data[4:], None, data[4:]
    dataset_id, config, _ = HUB_SOURCES.get(kind, (INSTRUCTION_DATASET, None, None))
    return dataset_id, config, dataset_id if data == "hub" else f"{dataset_id} (local sample)"


def results_from_run(run_dir: str | Path, manifest: dict) -> dict | None:
    """This variant's row and the dense baseline from a sweep's results store, matched by label."""
    from kick_hub.bench import report
    from kick_hub.bench.store import Store

    store = Store(run_dir, None)
    try:
        rows, dense = report.table_data(store)
        meta = store.meta()
    finally:
        store.close()
    if store.model != manifest["base_model"]:
        raise ValueError(f"run-dir: {run_dir} holds results for {store.model!r}, but the variant was made "
                         f"from {manifest['base_model']!r}")
    row = next((r for r in rows if r["label"] == manifest["label"]), None)
    if row is None:
        raise ValueError(f"run-dir: {run_dir} has no results for variant {manifest['label']!r}; have "
                         f"{sorted(r['label'] for r in rows)}")
    return {"row": row, "dense": dense, "data": meta.get("data"), "limit": meta.get("limit"),
            "warning": report.knowledge_collapse(row)}


def _results_table(results: dict) -> str:
    lines = ["| task | metric | dense | this variant | change |", "|---|---|---:|---:|---:|"]
    for task, value in results["row"]["abs"].items():
        spec = tasks.get(task).SPEC
        dense = results["dense"].get(task)
        change = "" if not dense else f"{(value - dense) / dense:+.1%}"
        arrow = " (lower is better)" if spec.lower_is_better else ""
        kind = "knowledge" if spec.knowledge else "in-context / fluency"
        lines.append(f"| {task} ({kind}) | {spec.metric}{arrow} | {dense:.4g} | {value:.4g} | {change} |"
                     if dense is not None else f"| {task} | {spec.metric} | - | {value:.4g} | |")
    return "\n".join(lines)


def _layer_table(manifest: dict) -> str:
    rows = [f"| {name} | {value:.4f} |" for name, value in manifest.get("layer_sparsity", {}).items()]
    if not rows:
        return ""
    return ("<details><summary>Per-layer sparsity (" + str(len(rows)) + " matrices)</summary>\n\n"
            "| layer | sparsity |\n|---|---:|\n" + "\n".join(rows) + "\n\n</details>\n")


def variant_card(variant_dir: str | Path, repo_id: str, run_dir: str | Path | None = None,
                 plots: list[str] = (), base_model: str | None = None):
    """The ``huggingface_hub.ModelCard`` for a variant directory (results only when ``run_dir`` is given)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    manifest = load_manifest(variant_dir)
    spec = manifest["spec"]
    base = base_model or manifest["base_model"]
    results = results_from_run(run_dir, manifest) if run_dir else None
    quantized = spec["method"] in QUANT_METHODS
    eval_results = []
    if results:
        for task, value in results["row"]["abs"].items():
            ds_id, ds_config, ds_name = dataset_for(task, results["data"])
            spec_t = tasks.get(task).SPEC
            eval_results.append(EvalResult(task_type=spec_t.hub_task, task_name=task, dataset_type=ds_id,
                                           dataset_config=ds_config, dataset_name=ds_name, metric_type=spec_t.metric,
                                           metric_name=spec_t.metric, metric_value=round(float(value), 4)))
    data = ModelCardData(
        base_model=base if _is_hub_id(base) else None, library_name="transformers", pipeline_tag="text-generation",
        tags=compression_tags(manifest), model_name=repo_id.split("/")[1], eval_results=eval_results or None,
        base_model_relation="quantized" if quantized and _is_hub_id(base) else None,
    )
    calib = manifest.get("calibration")
    calib_line = (f"{calib['nsamples']} x {calib['seqlen']} tokens from `{calib['source']}` (seed {calib['seed']}, "
                  f"ids sha256 `{calib['ids_sha256'][:16]}…`, exact ids in `{CALIBRATION_FILE}`)"
                  if calib else "none (data-free method)")
    warning = (f"> [!WARNING]\n> {results['warning']}\n\n" if results and results["warning"] else "")
    body = [
        f"# {repo_id.split('/')[1]}\n",
        warning,
        f"**{spec['method']}** compression of `{base}` to **{describe(spec)}**, made with "
        f"[kick-hub](https://github.com/llmkick/kick-hub) and checked with the LLM-KICK tasks (Jaiswal et al., "
        f"*Compressing LLMs: The Truth is Rarely Pure and Never Simple*, ICLR 2024), which measure what perplexity "
        f"hides: closed-book knowledge, multiple-choice reasoning, in-context retrieval, summarization and "
        f"instruction following.\n",
        "## Compression\n",
        "| | |\n|---|---|",
        f"| method | `{spec['method']}` |",
        f"| setting | {describe(spec)} |",
        f"| achieved sparsity (decoder Linear layers) | {manifest.get('sparsity', 0.0):.2%} |",
        f"| calibration | {calib_line} |",
        f"| wall time / peak RSS | {manifest['wall_time_s']} s / {manifest['peak_rss_mb']:.0f} MB |",
        f"| libraries | {', '.join(f'{k} {v}' for k, v in manifest.get('versions', {}).items())} |\n",
        _layer_table(manifest),
    ]
    if results:
        limit = results.get("limit")
        if isinstance(limit, dict):
            limit = ", ".join(f"{'others' if t == '*' else t}: {n}" for t, n in limit.items())
        limit = f", examples per task: {limit}" if limit else ""
        body += ["## LLM-KICK results\n",
                 f"Scored on `{results['data'] or 'world'}`{limit}, greedy decoding, beside the dense base model.\n",
                 _results_table(results) + "\n"]
    for plot in plots:
        body.append(f"![{Path(plot).stem}]({plot})\n")
    load = [f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")']
    extra = {"gptq": "pip install optimum gptqmodel  # GPTQ kernels\n",
             "int8": "pip install torchao\n", "bnb-int8": "pip install bitsandbytes\n",
             "nf4": "pip install bitsandbytes\n"}.get(spec["method"], "")
    body += ["## How to load\n", f"```bash\npip install transformers\n{extra}```\n",
             "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n" + "\n".join(load) + "\n```\n",
             "`kick_manifest.json` in this repo records every setting; reproduce with\n",
             f"```bash\nkick compress --model {base} --method {spec['method']} {_cli_setting(manifest)} --output DIR\n```\n"]
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(part for part in body if part))
    return card


def _cli_setting(manifest: dict) -> str:
    spec, calib = manifest["spec"], manifest.get("calibration")
    if spec["method"] in QUANT_METHODS:
        flags = f"--bits {spec['bits']}" if spec.get("bits") else ""
    else:
        flags = f"--pattern {spec['pattern']}" if spec.get("pattern") else f"--sparsity {spec['sparsity']}"
    if calib:
        flags += f" --calibration {calib['source']} --nsamples {calib['nsamples']} --seqlen {calib['seqlen']}"
    return flags
