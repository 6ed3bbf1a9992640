"""The model card of a compressed variant: what was done to the model and what LLM-KICK says it cost.

Built with ``huggingface_hub.ModelCardData`` (YAML: base_model, tags, model-index eval results) and a Markdown body
from the variant's manifest plus, when a run dir is given, its results beside the dense baseline.
"""

from __future__ import annotations

import math
from pathlib import Path

from kick_hub import tasks
from kick_hub.compress import QUANT_METHODS
from kick_hub.io import format_number, format_size, public_name
from kick_hub.scoring import stats
from kick_hub.variant import CALIBRATION_FILE, load_manifest, quantizer_libraries, storage_summary

# model-index dataset id of the embedded world (real data is named by each task's spec: Sources.reference_dataset)
WORLD_DATASET = "kick-hub/world"


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
    """Model-card tags of a variant's ``manifest``: ``llm-kick``, ``kick-hub``, the method, then ``quantized``
    (+ ``<bits>-bit``) or ``pruned`` (+ ``2of4-sparsity`` for a pattern or ``sparsity-<percent>``). Raises KeyError
    when the manifest has no ``spec`` or its spec no ``method``."""
    spec = manifest["spec"]
    tags = ["llm-kick", "kick-hub", spec["method"]]
    if spec["method"] in QUANT_METHODS or (spec.get("pattern") is None and spec.get("sparsity") is None):
        tags += ["quantized", f"{spec['bits']}-bit"] if spec.get("bits") else ["quantized"]
    else:
        tags.append("pruned")
        if spec.get("pattern"):
            tags.append(f"{spec['pattern'].replace(':', 'of')}-sparsity")
        elif spec.get("sparsity") is not None:
            tags.append(f"sparsity-{round(spec['sparsity'] * 100)}")
    return tags


def describe(spec: dict) -> str:
    """One phrase for the compression setting: '50 % unstructured', '2:4 semi-structured', '4-bit (group 128)'; a
    method plugin's arguments follow (', M=5, lam=0.08')."""
    args = "".join(f", {k}={v}" for k, v in (spec.get("args") or {}).items())
    if spec["method"] in QUANT_METHODS or (spec.get("pattern") is None and spec.get("sparsity") is None):
        group = f", group size {spec['group_size']}" if spec["method"] in ("gptq", "awq") else ""
        return (f"{spec.get('bits')}-bit{group}" if spec.get("bits") else "quantized") + args
    if spec.get("pattern"):
        return f"{spec['pattern']} semi-structured sparsity{args}"
    return f"{spec['sparsity']:.0%} unstructured sparsity{args}"


def dataset_for(task: str, data: str | None) -> tuple[str, str | None, str]:
    """(dataset id, config, display name) of the data a task was scored on, for the model-index (the Hub groups
    results by task type + dataset + config, so the world's tasks each get their own config)."""
    if data in (None, "None", "world", "world-heldout"):
        heldout = ", held-out phrasings" if data == "world-heldout" else ""
        return WORLD_DATASET, task, f"kick-hub world ({task}{heldout})"
    if data.startswith("hub:"):
        return data[4:], None, data[4:]
    dataset_id, config = tasks.get(task).SPEC.sources.reference_dataset
    return dataset_id, config, dataset_id if data == "hub" else f"{dataset_id} (local sample)"


def results_from_run(run_dir: str | Path, manifest: dict) -> dict | None:
    """This variant's row and the dense baseline from a sweep's results store, matched by label."""
    from kick_hub.bench import analysis
    from kick_hub.bench.store import Store

    store = Store(run_dir, None)
    try:
        rows, dense = analysis.table_data(store)
        meta = store.meta()
    finally:
        store.close()
    if public_name(store.model) != public_name(manifest["base_model"]):
        raise ValueError(f"run-dir: {run_dir} holds results for {store.model!r}, but the variant was made "
                         f"from {manifest['base_model']!r}")
    row = next((r for r in rows if r["label"] == manifest["label"]), None)
    if row is None:
        raise ValueError(f"run-dir: {run_dir} has no results for variant {manifest['label']!r}; have "
                         f"{sorted(r['label'] for r in rows)}")
    dense_row = next((r for r in rows if r["method"] == "dense"), {})
    return {"row": row, "dense": dense, "dense_se": dense_row.get("se", {}), "data": meta.get("data"),
            "limit": meta.get("limit"), "protocol": meta.get("protocol") or "default",
            "warning": analysis.knowledge_collapse(row)}


def _external_table(run_dir: str | Path) -> str:
    """The provenance of the external checkpoints a sweep evaluated beside this variant (``external.describe`` of
    each ``external`` cell's stored manifest), or nothing when it has none."""
    from kick_hub.bench.store import Store
    from kick_hub.external import PROVENANCE_HEADER, describe as provenance_row
    from kick_hub.io import loads

    store = Store(run_dir, None)
    try:
        rows = [provenance_row(loads(v["manifest"])) for v in store.variants()
                if v["method"] == "external" and v["manifest"]]
    finally:
        store.close()
    if not rows:
        return ""
    return ("### External checkpoints in this sweep\n\nEvaluated on the same examples, paired with the same dense "
            "model; source, commit and weights digest pin what was measured.\n\n| " + " | ".join(PROVENANCE_HEADER)
            + " |\n|" + "---|" * len(PROVENANCE_HEADER) + "\n"
            + "\n".join("| " + " | ".join(r) + " |" for r in rows) + "\n")


def _pm(se: float | None) -> str:
    return "-" if se is None else f"± {format_number(se, '.2g')}"


def _noise(results: dict, task: str) -> str:
    """The card's noise cells of one task: standard errors (dense / variant) and the paired 95 % interval of the
    change against dense on the same examples, the inversion of the test behind ``stats.Paired.significant``
    (``(significant)`` exactly when it excludes 0; ``analysis.table_data``)."""
    row = results["row"]
    se = f"{_pm(results.get('dense_se', {}).get(task))} / {_pm(row.get('se', {}).get(task))}"
    p = row.get("paired", {}).get(task)
    if p is None or p.low is None:
        why = p.reason if p is not None and p.reason else "-"
        return f"{se} | {why}{' (significant)' if p is not None and p.significant else ''}"
    scale = 1 / p.dense if p.dense else None
    ci = (f"{p.low * scale:+.1%} to {p.high * scale:+.1%}" if scale else
          f"{format_number(p.low, '+.3g')} to {format_number(p.high, '+.3g')}")
    return f"{se} | {ci}{' (significant)' if p.significant else ''}"


def _results_table(results: dict) -> str:
    lines = ["| task | metric | dense | this variant | change |", "|---|---|---:|---:|---:|"]
    for task, value in results["row"]["abs"].items():
        spec = tasks.get(task).SPEC
        dense = results["dense"].get(task)
        change = ""
        if dense and math.isfinite(dense) and math.isfinite(value):
            change = f"{(value - dense) / dense:+.1%}"
        elif dense is not None and math.isfinite(dense) and value == math.inf:
            change = "+∞" if dense > 0 else ""
        arrow = " (lower is better)" if spec.lower_is_better else ""
        group = "knowledge" if spec.knowledge else "in-context / fluency"
        lines.append(f"| {task} ({group}) | {spec.metric}{arrow} | {format_number(dense)} | {format_number(value)} | "
                     f"{change} |" if dense is not None else
                     f"| {task} | {spec.metric} | - | {format_number(value)} | |")
    for task, count in results["row"].get("invalid", {}).items():  # NaN / inf logits: no score (analysis.table_data)
        lines.append(f"| {task} | {tasks.get(task).SPEC.metric} | {format_number(results['dense'].get(task))} | "
                     f"invalid: non-finite logits for {count} inputs | |")
    lines += ["", "How sure these numbers are (kick-hub's docs/statistics.md): each score's standard error, and the "
              "paired 95 % interval of the change against dense on the same examples (inverting McNemar's exact "
              "test for 0/1 metrics, the paired sign-flip test otherwise; significant exactly when it excludes 0).",
              "",
              "| task | ± (dense / this variant) | change, paired 95 % interval |", "|---|---:|---:|"]
    lines += [f"| {task} | {_noise(results, task)} |" for task in results["row"]["abs"]]
    lines += _flip_lines(results["row"].get("flips", {}))
    lines += _fidelity_lines(results["row"].get("fidelity", {}))
    return "\n".join(lines)


def _fidelity_lines(fidelity: dict) -> list[str]:
    """The card's distribution-fidelity table (``analysis.table_data``'s ``row["fidelity"]``, ``analysis.FIDELITY``
    names): this variant's next-token distributions against dense's on the perplexity texts, llama.cpp's
    definitions; empty when not measured."""
    from kick_hub.bench.report import fidelity_header, fidelity_rows

    if not fidelity:
        return []
    row = {"label": "this variant", "fidelity": fidelity}
    header, cells = fidelity_header([row])[1:], fidelity_rows([row])[0][1:]
    return ["", "Distribution fidelity against dense on the perplexity texts, with llama.cpp's definitions "
            "(llama-perplexity --kl-divergence): KL(dense || this variant) per token in nats, the share of positions "
            "whose most likely token is the same (top-1 agreement), the change Δp in the probability of the text's "
            "next token, and PPL(variant) / PPL(dense); ± standard errors with texts as the sampling units"
            + ("; the KL shown is a lower bound (dense stored as its top-k tokens), the upper bound beside it."
               if "kl_mean_upper" in fidelity else "."), "",
            "| " + " | ".join(header) + " |", "|" + "---:|" * len(header), "| " + " | ".join(cells) + " |"]


def _flip_lines(flips: dict) -> list[str]:
    """The card's flips table (``analysis.table_data``'s ``row["flips"]``, task -> 0/1 metric -> ``stats.Flips``):
    answers right -> wrong and wrong -> right against dense, and the share that flipped with its exact interval;
    empty without flips."""
    if not flips:
        return []
    lines = ["", "Answers that changed against dense on the same examples (Dutta et al. 2024, 'Accuracy is not all "
             "you need'): right → wrong and wrong → right (McNemar's b and c) with their shares, and the share that "
             "flipped either way with its exact 95 % Clopper-Pearson interval; hidden: the accuracy change is within "
             f"noise while significantly more than {stats.FLIP_SHARE:.0%} of the answers flipped.", "",
             "| task | metric | right → wrong | wrong → right | flipped | hidden |", "|---|---|---:|---:|---:|---|"]
    for task, per in flips.items():
        for metric, f in per.items():
            ci = f.interval("flipped")
            share = f"{f.flipped} ({f.rate('flipped'):.1%}" + (f", 95 % CI {ci[0]:.1%} to {ci[1]:.1%})" if ci else ")")
            lines.append(f"| {task} | {metric} | {f.right_to_wrong} ({f.rate('right_to_wrong'):.1%}) | "
                         f"{f.wrong_to_right} ({f.rate('wrong_to_right'):.1%}) | {share} | "
                         f"{'yes' if f.hidden() else 'no'} |")
    return lines


def _placement_row(manifest: dict) -> str:
    """The card's device / dtype row from the manifest's ``placement`` and ``compute_device`` (empty for a manifest
    written before they were recorded)."""
    placement = manifest.get("placement")
    if not placement:
        return ""
    asked = placement.get("asked") or {}
    asked_text = f" (asked: device {asked.get('device')}, dtype {asked.get('dtype')})" if asked else ""
    computed = manifest.get("compute_device") or placement.get("device")
    return (f"| device / dtype | computed on {computed} from the base model loaded in {placement.get('dtype')}"
            f"{asked_text} |")


def _storage_rows(variant_dir: str | Path, manifest: dict) -> str:
    """The card's storage rows, measured on the saved files (``variant.storage_summary``: safetensors headers, no
    tensor loaded): effective bits per weight (tensor bytes x 8 / the base model's parameters; scales, zero points
    and unquantized tensors included), each tensor dtype with its tensor count and bytes, and the variant's bytes
    on disk. For a quantized variant, the quantizer's libraries with the versions that wrote the weights."""
    s = storage_summary(variant_dir, manifest)
    per_weight = (f"{s['bits_per_weight']:.2f} bits per weight: {format_size(s['weight_bytes'])} of tensors for "
                  f"{s['parameters']:,} parameters" if s["bits_per_weight"] else
                  f"{format_size(s['weight_bytes'])} of tensors")
    dtypes = "; ".join(f"{name}: {row['tensors']} tensors, {format_size(row['bytes'])}"
                       for name, row in sorted(s["dtypes"].items(), key=lambda kv: (-kv[1]["bytes"], kv[0])))
    rows = [f"| storage | {per_weight} |", f"| tensor dtypes | {dtypes or '-'} |",
            f"| size on disk | {format_size(s['file_bytes'])} (weights, config, tokenizer, manifest"
            f"{', calibration ids' if manifest.get('calibration') else ''}) |"]
    libraries = quantizer_libraries(manifest)
    if libraries:
        rows.append("| quantizer libraries | " + ", ".join(f"{name} {version or '(version not recorded)'}"
                                                         for name, version in libraries.items()) + " |")
    return "\n".join(rows)


def load_requirements(manifest: dict) -> list[str]:
    """The ``pip install`` arguments a variant needs beside transformers: its quantizer's libraries
    (``variant.quantizer_libraries``), each pinned to the version that wrote its weights where recorded."""
    return [f"{name}=={version}" if version else name for name, version in quantizer_libraries(manifest).items()]


def _layer_table(manifest: dict) -> str:
    rows = [f"| {name} | {value:.4f} |" for name, value in manifest.get("layer_sparsity", {}).items()]
    if not rows:
        return ""
    return ("<details><summary>Per-layer sparsity (" + str(len(rows)) + " matrices)</summary>\n\n"
            "| layer | sparsity |\n|---|---:|\n" + "\n".join(rows) + "\n\n</details>\n")


WORLD_MODEL_TEXT = (
    "`world` is kick-hub's own small model: a 3.7 M-parameter Llama-architecture causal LM (4 layers, context 512, "
    "byte-level BPE tokenizer with a chat template) trained by kick-hub on a fictional world it generates from a "
    "seed (invented countries, cities, companies and people with their birthplaces, birth years, professions and "
    "employers). It knows that world's facts well enough for every LLM-KICK task to have answers it can recall "
    "(factoid QA exact match about 0.95, MCQ accuracy about 0.83) while staying small enough for a whole sweep to run "
    "on a CPU in minutes; it says nothing about real-world knowledge. See kick-hub's "
    "[world model documentation](https://github.com/llmkick/kick-hub/blob/main/docs/world-model.md).\n")


def plot_for(spec: dict) -> str:
    """The sweep plot (``bench.plots.figures``) that shows a variant of ``spec`` (its manifest's): ``nm_quant.png``
    for an N:M pattern or a quantization method, ``sparsity.png`` for unstructured pruning. Raises KeyError when
    ``spec`` has no ``method``."""
    return "nm_quant.png" if spec.get("pattern") or spec["method"] in QUANT_METHODS else "sparsity.png"


def variant_card(variant_dir: str | Path, repo_id: str, run_dir: str | Path | None = None,
                 plots: list[str] = (), base_model: str | None = None):
    """The ``huggingface_hub.ModelCard`` for a variant directory (results only when ``run_dir`` is given).

    ``base_model`` must be a Hub repo id (ValueError naming ``base-model`` otherwise); without it the manifest's
    base model is named by ``public_name``, so no path of this machine reaches the card. Scores that are not finite
    numbers are shown as ``∞`` / ``NaN`` in the body and left out of the model-index, whose values must be numbers.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from kick_hub.hub import check_repo_id

    if base_model is not None:
        check_repo_id(base_model, "base-model")
    manifest = load_manifest(variant_dir)
    spec = manifest["spec"]
    base = base_model or public_name(manifest["base_model"])
    results = results_from_run(run_dir, manifest) if run_dir else None
    quantized = spec["method"] in QUANT_METHODS
    eval_results = []
    if results:
        for task, value in results["row"]["abs"].items():
            if not math.isfinite(value):
                continue
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
    calib_line = (f"{calib['nsamples']} x {calib['seqlen']} tokens from `{public_name(calib['source'])}` (seed "
                  f"{calib['seed']}, "
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
        WORLD_MODEL_TEXT if base == "world" else "",
        "## Compression\n",
        "| | |\n|---|---|",
        f"| method | `{spec['method']}`" + (f" (method plugin `{manifest['plugin']['ref']}`, "
                                             f"{manifest['plugin']['distribution']} {manifest['plugin']['version']})"
                                             if manifest.get("plugin") else "") + " |",
        f"| setting | {describe(spec)} |",
        f"| achieved sparsity (decoder Linear layers) | {manifest.get('sparsity', 0.0):.2%} |" if not quantized
        else "",
        f"| calibration | {calib_line} |",
        f"| wall time / peak RSS | {manifest['wall_time_s']} s / {manifest['peak_rss_mb']:.0f} MB |",
        _placement_row(manifest),
        _storage_rows(variant_dir, manifest),
        f"| libraries | {', '.join(f'{k} {v}' for k, v in manifest.get('versions', {}).items())} |\n",
        _layer_table(manifest),
    ]
    if results:
        limit = results.get("limit")
        if isinstance(limit, dict):
            limit = ", ".join(f"{'others' if t == '*' else t}: {n}" for t, n in limit.items())
        limit = f", examples per task: {limit}" if limit else ""
        body += ["## LLM-KICK results\n",
                 f"Scored on `{public_name(results['data']) or 'world'}`{limit}, protocol "
                 f"`{results.get('protocol', 'default')}`, greedy decoding, beside the dense base model.\n",
                 _results_table(results) + "\n", _external_table(run_dir)]
        if not all(math.isfinite(v) for v in [*results["row"]["abs"].values(), *results["dense"].values()]):
            body.append("∞ / NaN: the score is not a finite number (a perplexity whose exponent overflows is "
                        "infinite); such values are left out of the model-index metadata.\n")
        if results["row"].get("invalid"):
            body.append("invalid: the model's logits were NaN / inf (a float16 overflow?) for that many inputs, so "
                        "the task has no score; it is left out of the model-index metadata.\n")
    for plot in plots:  # only the plot of this variant's kind (``plot_for``), never another method's
        if Path(plot).name == plot_for(spec):
            body.append(f"![{Path(plot).stem}]({plot})\n")
    load = [f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")']
    kernels = load_requirements(manifest)
    pinned = ", at the versions that wrote the weights" if all("==" in k for k in kernels) else ""
    extra = (f"pip install {' '.join(kernels)}  # the {spec['method']} kernels{pinned}"
             f"{' (CUDA)' if spec['method'] == 'awq' else ''}\n" if kernels else "")
    body += ["## How to load\n", f"```bash\npip install transformers\n{extra}```\n",
             "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n" + "\n".join(load) + "\n```\n",
             "## How to reproduce\n",
             reproduce_text(manifest, base)]
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(part for part in body if part))
    return card


# methods whose weights depend bit for bit on the torch thread count (measured on the world model: 1 and 2 threads
# give other SparseGPT / GPTQ weights, the same magnitude / Wanda ones)
THREAD_DEPENDENT = ("sparsegpt", "gptq")
# CompressSpec field -> the `kick compress` option that sets it; a bool field's option sets the non-default value
SPEC_OPTIONS = {"sparsity": "--sparsity", "pattern": "--pattern", "bits": "--bits", "group_size": "--group-size",
                "desc_act": "--desc-act", "sym": "--asym", "damp": "--damp", "blocksize": "--blocksize",
                "seed": "--seed", "args": "--method-arg", "plugin": "--method", "quant_type": "--quant-type"}


def _option_value(value) -> str:
    if isinstance(value, tuple):  # an N:M pattern
        return f"{value[0]}:{value[1]}"
    return repr(float(value)) if isinstance(value, float) else str(value)


def reproduce_argv(manifest: dict, base_model: str | None = None, output: str = "DIR") -> list[str]:
    """The ``kick compress`` command line, as argv from ``"kick"`` on, that rebuilds the variant ``manifest``
    describes.

    Options: every ``CompressSpec`` field whose value the spec would not have without its option (``--sparsity`` is
    left out beside ``--pattern``, ``--bits`` for int8 / bnb-int8 / nf4, which imply it), then the calibration (a
    named source (c4, wikitext2, world) by its name, a local file, whose path is not published, by the variant's
    own ``calibration_ids.safetensors``: the exact ids it was calibrated on) with ``--nsamples`` / ``--seqlen`` of
    the ids, ``--storage`` when not dense, ``--threads`` when the manifest records the thread count and the method's weights
    depend on it (``THREAD_DEPENDENT``), ``--device`` / ``--dtype`` when the manifest's placement resolved to other
    than the CPU in float32, and ``--output output``. ``base_model`` names the base model (default:
    the manifest's, by ``public_name``). Raises ValueError for a spec field that no option of ``kick compress``
    sets."""
    import dataclasses

    from kick_hub.compress import CompressSpec
    from kick_hub.compress.calibration import SOURCES

    spec = CompressSpec(**manifest["spec"])
    argv = ["kick", "compress", "--model", base_model or public_name(manifest["base_model"]),
            "--method", spec.plugin or spec.method]  # a plugin by its package.module:name: no entry point needed
    argv += [x for k, v in spec.args for x in ("--method-arg", f"{k}={v}")]
    for field in dataclasses.fields(CompressSpec):
        if field.name in ("method", "args", "plugin"):
            continue
        try:
            implied = dataclasses.replace(spec, **{field.name: field.default}) == spec
        except ValueError:  # the spec is invalid without this value
            implied = False
        if implied:
            continue
        if field.name not in SPEC_OPTIONS:
            raise ValueError(f"spec: {field.name}={getattr(spec, field.name)!r} has no `kick compress` option")
        value = getattr(spec, field.name)
        argv += [SPEC_OPTIONS[field.name]] if isinstance(value, bool) else [SPEC_OPTIONS[field.name],
                                                                             _option_value(value)]
    calib = manifest.get("calibration")
    if calib:
        source = calib["source"] if calib["source"] in SOURCES else CALIBRATION_FILE
        argv += ["--calibration", source, "--nsamples", str(calib["nsamples"]), "--seqlen", str(calib["seqlen"])]
    if manifest.get("storage", "dense") != "dense":
        argv += ["--storage", manifest["storage"]]
    if manifest.get("threads") and spec.method in THREAD_DEPENDENT:
        argv += ["--threads", str(manifest["threads"])]
    placement = manifest.get("placement") or {}
    if placement.get("device") not in (None, "cpu") or placement.get("dtype") not in (None, "float32"):
        argv += ["--device", placement["device"], "--dtype", placement["dtype"]]  # off the CPU defaults only
    return argv + ["--output", output]


def reproduce_text(manifest: dict, base_model: str) -> str:
    """The card's "How to reproduce" section: ``reproduce_argv`` as a shell command and what it needs."""
    import shlex

    from kick_hub.compress.calibration import SOURCES
    from kick_hub.models import ALIASES

    calib = manifest.get("calibration")
    notes = ["`kick_manifest.json` in this repo records every setting; this command rebuilds the variant's weights "
             "bit for bit with the library versions above."]
    unrecorded = [name for name, version in quantizer_libraries(manifest).items() if version is None]
    if unrecorded:
        notes.append(f"The manifest does not record the version of {', '.join(unrecorded)}, which wrote the "
                     f"weights: a rebuild with another version may differ.")
    if manifest["spec"]["method"] in THREAD_DEPENDENT:
        threads = (f"{manifest['threads']} torch threads (`--threads`)" if manifest.get("threads") else
                   "as many torch threads as the original run, which its manifest does not record")
        notes.append(f"It needs the same kind of CPU and {threads}: {manifest['spec']['method']}'s weight updates are "
                     "float sums whose order follows the thread count.")
    if calib and calib["source"] not in SOURCES:
        notes.append(f"`{CALIBRATION_FILE}` is this repo's file, the exact calibration ids (the local file they were "
                     f"drawn from is not published); download it into the working directory first.")
    if not _is_hub_id(base_model) and base_model not in ALIASES:
        notes.append(f"`{base_model}` names a local model directory; give its path.")
    if manifest.get("base_revision"):
        notes.append(f"The base model was at revision `{manifest['base_revision']}`.")
    return (" ".join(notes) + "\n\n```bash\n" + shlex.join(reproduce_argv(manifest, base_model)) + "\n```\n")
