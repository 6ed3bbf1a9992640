"""External variants: checkpoints kick-hub did not make, evaluated in a sweep beside the built-in cells
(``kick bench --variant LABEL=SOURCE`` / ``--variants FILE``; docs/playground.md).

A source is a local model directory, a GGUF file (run in llama.cpp: local, or ``ORG/NAME/FILE.gguf`` in a Hub
repo) or a Hub model id with an optional revision (``ORG/NAME@REV``, or the variants
file's ``revision``), resolved to a local snapshot and a commit sha with ``huggingface_hub.snapshot_download`` (which
honours ``HF_HUB_OFFLINE``: offline, only what is cached). Each becomes an ``ExternalSource``: what the sweep's
identity records of it (``identity``: the public source, the commit, a digest of its weight files), so a resumed
sweep that gives a label another source, revision or weights is refused like any other settings change.

``check_sources`` refuses, before any cell runs, a source that is not a causal LM, whose format needs a package that
is not installed, or whose tokenizer is not the dense model's (another vocabulary, or another encoding of the
sweep's task prompts: its examples would not pair). ``provenance`` measures what the report and the card show of it:
format and quantization config, sparsity of each 2-D weight matrix (summarised), effective bits per weight and bytes
on disk, read from the safetensors files without loading the model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
FIELDS = ("label", "source", "revision", "notes")  # what a variants file's entry may hold
# a checkpoint's quantization_config.quant_method -> the Python modules transformers needs to load it, and the
# command that installs them
FORMAT_PACKAGES = {
    "gptq": (("gptqmodel", "optimum"), "pip install 'kick-hub[gptq]'"),
    "awq": (("gptqmodel",), "pip install 'kick-hub[gptq]'"),
    "compressed-tensors": (("compressed_tensors",), "pip install compressed-tensors"),
    "torchao": (("torchao",), "pip install torchao"),
    "bitsandbytes": (("bitsandbytes",), "pip install bitsandbytes"),
    "hqq": (("hqq",), "pip install hqq"),
    "quanto": (("optimum.quanto",), "pip install optimum-quanto"),
    "eetq": (("eetq",), "pip install eetq"),
    "aqlm": (("aqlm",), "pip install aqlm"),
    "vptq": (("vptq",), "pip install vptq"),
    "higgs": (("flute",), "pip install flute-kernel"),
    "spqr": (("spqr_quant",), "pip install spqr_quant"),
}
GGUF_EXTRA = "pip install 'kick-hub[gguf]'"


@dataclass(frozen=True)
class ExternalSource:
    """A resolved external variant: its ``label``; ``source`` and ``revision`` as given; ``notes``; ``path`` the
    local directory holding it (a Hub snapshot for a Hub id); ``commit`` the Hub commit sha (None for a local
    directory); ``weights_sha256`` the digest of its weight files (``weights_digest``)."""

    label: str
    source: str
    revision: str | None
    notes: str | None
    path: str
    commit: str | None
    weights_sha256: str

    @property
    def hub(self) -> bool:
        """Whether the source is a Hub model id."""
        return self.commit is not None

    @property
    def public_source(self) -> str:
        """The source as anything published names it: a Hub id as it is, a local directory by its last component
        (``io.public_name``)."""
        from kick_hub.io import public_name

        return self.source if self.hub else public_name(self.source)

    def identity(self) -> dict:
        """What the store and the sweep identity record of this cell (``variants.spec``): the public source, the
        commit and the weights' digest; another value of any is a settings change."""
        return {"external": self.public_source, "revision": self.commit, "weights_sha256": self.weights_sha256}

    @property
    def gguf(self) -> bool:
        """Whether the source is a GGUF file (run in llama.cpp) rather than a transformers checkpoint."""
        from kick_hub.backends.llamacpp import is_gguf

        return is_gguf(self.path)

    @property
    def model(self) -> str:
        """What the evaluation loads: the local directory."""
        return self.path


def _refuse(label: str, source: str, what: str, remedy: str) -> ValueError:
    return ValueError(f"variant {label}: source {source} {what}; {remedy}")


def parse_variant(text: str) -> tuple[str, str]:
    """``LABEL=SOURCE`` (``--variant``) -> (label, source); ValueError naming the option otherwise."""
    label, sep, source = text.partition("=")
    if not sep or not label.strip() or not source.strip():
        raise ValueError(f"variant: must be LABEL=SOURCE (a local directory or ORG/NAME[@REV]), got {text!r}")
    return label.strip(), source.strip()


def read_variants_file(path: str | Path) -> list[dict]:
    """The entries of a variants file: TOML (``[[variant]]`` tables, read with ``tomllib``) or, when PyYAML is
    installed, YAML (a list, or a ``variants:`` list), each with ``label`` and ``source`` and optionally
    ``revision`` and ``notes``. ValueError naming the file and the entry for anything else."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"variants: cannot read {path} ({e.strerror})") from e
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError(f"variants: {path} is YAML, which needs PyYAML (pip install pyyaml); or write it as "
                             "TOML ([[variant]] tables)") from None
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"variants: {path} is not valid YAML ({e})") from e
        entries = doc.get("variants", doc.get("variant")) if isinstance(doc, dict) else doc
    else:
        import tomllib

        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"variants: {path} is not valid TOML ({e}); write [[variant]] tables with label, "
                             "source, revision, notes") from e
        entries = doc.get("variant", doc.get("variants"))
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"variants: {path} lists no variant (TOML: [[variant]] tables; YAML: a list) with label "
                         "and source")
    out = []
    for i, e in enumerate(entries, 1):
        if not isinstance(e, dict):
            raise ValueError(f"variants: {path} entry {i} is not a table of {', '.join(FIELDS)}")
        unknown = sorted(set(e) - set(FIELDS))
        missing = [k for k in ("label", "source") if not isinstance(e.get(k), str) or not e[k].strip()]
        if unknown or missing:
            raise ValueError(f"variants: {path} entry {i}: " + "; ".join(
                ([f"unknown {', '.join(unknown)}"] if unknown else []) + ([f"needs {', '.join(missing)}"] if missing
                                                                          else []))
                + f" (allowed: {', '.join(FIELDS)})")
        for k in ("revision", "notes"):
            if e.get(k) is not None and not isinstance(e[k], str):
                raise ValueError(f"variants: {path} entry {i}: {k} must be a string, got {e[k]!r}")
        out.append({k: e.get(k) for k in FIELDS})
    return out


def weight_files(directory: str | Path) -> list[Path]:
    """The weight files of a checkpoint directory (``WEIGHT_SUFFIXES``; kick's calibration ids left out), sorted."""
    from kick_hub.variant import CALIBRATION_FILE

    root = Path(directory)
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES
                  and p.name != CALIBRATION_FILE)


def weights_digest(files: Sequence[Path]) -> str:
    """sha256 over the weight ``files``: each file's name and the sha256 of its bytes, in name order (hex)."""
    outer = hashlib.sha256()
    for f in sorted(files, key=lambda p: p.name):
        inner = hashlib.sha256()
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                inner.update(chunk)
        outer.update(f"{f.name}\0{inner.hexdigest()}\n".encode())
    return outer.hexdigest()


def _gguf(label: str, source: str, revision: str | None) -> ExternalSource:
    """The ``ExternalSource`` of a ``.gguf`` source, run in llama.cpp (``kick_hub.backends.llamacpp``): a local
    file (no revision), or a file in a Hub repo, ``ORG/NAME/FILE.gguf`` (``ORG/NAME@REV/FILE.gguf``, or the
    variants file's ``revision``), downloaded with ``huggingface_hub.hf_hub_download`` and pinned to the commit it
    resolved to. Its ``path`` is the local file, its digest the file's (``weights_digest``). Refused: a local path
    that is not a file, a Hub file that cannot be had (the reasons of ``_hub_snapshot``), a missing
    llama-cpp-python."""
    from kick_hub.backends.llamacpp import hub_gguf

    local = Path(source).expanduser()
    hub = hub_gguf(source)
    if not _importable("llama_cpp"):
        raise _refuse(label, source, "is a GGUF file, which runs in llama.cpp (llama-cpp-python, not installed)",
                      f"install it: {GGUF_EXTRA}")
    if hub is None:
        if revision is not None:
            raise _refuse(label, source, f"is a local GGUF file, which has no revision ({revision!r})",
                          "drop the revision, or give a Hub file ORG/NAME/FILE.gguf")
        if not local.is_file():
            raise _refuse(label, source, "is not a GGUF file on this machine",
                          "give an existing file, or a file in a Hub repo as ORG/NAME/FILE.gguf")
        return ExternalSource(label, source, None, None, str(local.resolve()), None, weights_digest([local]))
    repo_id, rev, filename = hub
    if rev and revision and rev != revision:
        raise _refuse(label, source, f"names revision {rev!r} but the variants file says {revision!r}",
                      "give one of them")
    path, commit = _hub_download(label, source, repo_id, rev or revision, filename)
    return ExternalSource(label, f"{repo_id}/{filename}", rev or revision, None, path, commit,
                          weights_digest([Path(path)]))


@contextmanager
def _hub_errors(label: str, source: str, revision: str | None) -> Iterator[None]:
    """huggingface_hub's download errors inside the block, as ``_refuse`` lines naming the remedy (a gated repo is
    a missing repo to huggingface_hub, and a missing local entry a missing entry: the narrower ones first)."""
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    try:
        yield
    except RevisionNotFoundError as e:
        raise _refuse(label, source, f"has no revision {revision!r} on the Hub",
                      "give a branch, tag or commit sha it has") from e
    except GatedRepoError as e:
        raise _refuse(label, source, "is a gated Hub repo", "accept its terms on the Hub and set HF_TOKEN") from e
    except RepositoryNotFoundError as e:
        raise _refuse(label, source, "does not exist (no local directory, and no Hub model repo of that id)",
                      "give an existing directory or Hub id (set HF_TOKEN for a private repo)") from e
    except LocalEntryNotFoundError as e:
        raise _refuse(label, source, "is not in the local Hugging Face cache and the Hub cannot be reached "
                      "(offline)", "download it once online, unset HF_HUB_OFFLINE, or give a local path") from e
    except EntryNotFoundError as e:
        raise _refuse(label, source, "names a file the Hub repo does not have",
                      "give a file of the repo (its Files tab lists them)") from e


def _hub_download(label: str, source: str, repo_id: str, revision: str | None, filename: str) -> tuple[str, str]:
    """(local path, commit sha) of ``filename`` in ``repo_id`` at ``revision`` (None: the default branch)."""
    from huggingface_hub import hf_hub_download

    with _hub_errors(label, source, revision):
        path = hf_hub_download(repo_id, filename, revision=revision)
    return path, Path(path).parents[len(Path(filename).parts) - 1].name  # .../snapshots/<commit>/<filename>


def _hub_snapshot(label: str, source: str, repo_id: str, revision: str | None) -> tuple[str, str]:
    """(local snapshot directory, commit sha) of ``repo_id`` at ``revision`` (None: the default branch)."""
    from huggingface_hub import snapshot_download

    with _hub_errors(label, source, revision):
        path = snapshot_download(repo_id, revision=revision)
    return path, Path(path).name


def resolve(label: str, source: str, revision: str | None = None, notes: str | None = None) -> ExternalSource:
    """The ``ExternalSource`` of ``label`` = ``source``: a local directory, a ``.gguf`` file (``_gguf``), or a Hub
    id (``ORG/NAME``, ``ORG/NAME@REV``; ``revision`` from a variants file; both given and different is refused)
    downloaded to the Hub cache and pinned to its commit. ValueError, naming the label, the source and the remedy,
    for a bad label, a source that does not exist or holds no weight files."""
    if not LABEL.match(label) or label == "dense":
        raise ValueError(f"variant {label}: a label is letters, digits, '.', '_' and '-' (not 'dense'), starting "
                         f"with a letter or digit; got {label!r}")
    local = Path(source).expanduser()
    from kick_hub.backends.llamacpp import is_gguf

    if is_gguf(source):
        return replace(_gguf(label, source, revision), notes=notes)
    if local.is_dir():
        if revision is not None:
            raise _refuse(label, source, f"is a local directory, which has no revision ({revision!r})",
                          "drop the revision or give a Hub id")
        path, commit = str(local.resolve()), None
    elif local.exists():
        raise _refuse(label, source, "is a file, not a model directory", "give the directory holding config.json "
                      "and the weights")
    else:
        repo_id, _, rev = source.partition("@")
        if not HUB_ID.match(repo_id) or source.startswith((".", "/", "~")):
            raise _refuse(label, source, "does not exist", "give an existing model directory or a Hub id "
                          "ORG/NAME[@REV]")
        if rev and revision and rev != revision:
            raise _refuse(label, source, f"names revision {rev!r} but the variants file says {revision!r}",
                          "give one of them")
        path, commit = _hub_snapshot(label, source, repo_id, rev or revision)
        source, revision = repo_id, rev or revision
    files = weight_files(path)
    if not (Path(path) / "config.json").is_file() or not files:
        raise _refuse(label, source, "is not a transformers checkpoint (it needs config.json and weight files)",
                      "give the directory save_pretrained wrote")
    return ExternalSource(label, source, revision, notes, path, commit, weights_digest(files))


def resolve_all(entries: Sequence[dict], reserved: Sequence[str] = ()) -> list[ExternalSource]:
    """``resolve`` every entry (dicts of ``FIELDS``), refusing (ValueError) two entries with one label and a label
    that is a built-in cell's (``reserved``) before any source is read."""
    seen: dict[str, str] = {}
    for e in entries:
        if e["label"] in seen:
            raise ValueError(f"variant {e['label']}: given twice (sources {seen[e['label']]} and {e['source']}); "
                             "give each variant its own label")
        if e["label"] in reserved:
            raise ValueError(f"variant {e['label']}: the label is a built-in cell of this sweep (source "
                             f"{e['source']}); choose another label")
        seen[e["label"]] = e["source"]
    return [resolve(e["label"], e["source"], e.get("revision"), e.get("notes")) for e in entries]


def checkpoint_format(path: str | Path) -> tuple[str, dict | None]:
    """(format, quantization config) of the checkpoint in ``path``: the config's ``quantization_config``
    ``quant_method`` (``gptq``, ``compressed-tensors``, ``torchao``, ``bitsandbytes``, ...) with that config, else
    ``kick <method>`` for a variant kick wrote (its manifest), else ``dense``; a local path inside the config is
    replaced by its last component (nothing published carries one)."""
    import json

    from kick_hub.variant import MANIFEST

    config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    quant = config.get("quantization_config")
    if isinstance(quant, dict):
        name = str(quant.get("quant_method", "unknown")).lower()
        return name, _scrub(quant)
    if (Path(path) / MANIFEST).exists():
        from kick_hub.variant import load_manifest

        return f"kick {load_manifest(path).get('method')}", None
    return "dense", None


def _scrub(value: Any) -> Any:
    """``value`` with every string that is a local absolute path replaced by its last component."""
    from kick_hub.io import public_name

    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, str) and (value.startswith(("/", "~")) or re.match(r"^[A-Za-z]:\\", value)):
        return public_name(value)
    return value


def _causal_lm(source: ExternalSource):
    """The source's config, refused (ValueError) when transformers cannot read it or it is not a causal LM."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(source.path)
    except (OSError, ValueError, KeyError) as e:
        raise _refuse(source.label, source.source, f"has a config transformers cannot read ({e})",
                      "give a transformers checkpoint") from e
    classes = {c for v in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values() for c in ((v,) if isinstance(v, str) else v)}
    saved = getattr(config, "architectures", None) or []  # the class that wrote the weights (BertModel, not its LM)
    if (config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or getattr(config, "is_encoder_decoder", False)
            or (saved and not any(a in classes for a in saved))):
        archs = ", ".join(saved or [config.model_type])
        raise _refuse(source.label, source.source, f"is not a causal LM ({archs}, model_type "
                      f"{config.model_type!r}: not an AutoModelForCausalLM class)",
                      "give a decoder-only language model")
    return config


def _packages(source: ExternalSource) -> None:
    """Refuse a source whose format needs Python packages that are not installed, naming the install command."""
    fmt, _ = checkpoint_format(source.path)
    needs = FORMAT_PACKAGES.get(fmt)
    if needs is None:
        return
    missing = [m for m in needs[0] if not _importable(m)]
    if missing:
        raise _refuse(source.label, source.source, f"is a {fmt} checkpoint, which needs {', '.join(missing)} "
                      "(not installed)", f"install it: {needs[1]}")


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def prompts(tasks: Sequence[str], data: str, per_task: int = 3) -> list[str]:
    """A few of the sweep's task prompts: every text field of the first ``per_task`` records of each task that
    ``data`` has (``records.load``); tasks without data give none."""
    from kick_hub.tasks import records as task_records

    out = []
    for task in tasks:
        try:
            records = task_records.load(task, data, per_task)
        except ValueError:
            continue
        for r in records[:per_task]:
            out += [v for v in r.values() if isinstance(v, str) and v.strip()]
    return out


def tokenizer_difference(dense, other, texts: Sequence[str]) -> str | None:
    """What differs between tokenizers ``dense`` and ``other`` (transformers tokenizers): the vocabulary (size,
    and a few tokens that differ), the special tokens the evaluation uses (bos, eos, pad), or the encoding of one of
    ``texts`` (the first that differs, with the first differing position); None when they agree."""
    a, b = dense.get_vocab(), other.get_vocab()
    if a != b:
        only_a = sorted(set(a) - set(b))[:3]
        only_b = sorted(set(b) - set(a))[:3]
        moved = sorted(t for t in set(a) & set(b) if a[t] != b[t])[:3]
        parts = [f"vocabulary of {len(b)} tokens vs dense's {len(a)}"]
        if only_b:
            parts.append(f"tokens dense lacks: {', '.join(map(repr, only_b))}")
        if only_a:
            parts.append(f"dense's tokens it lacks: {', '.join(map(repr, only_a))}")
        if moved:
            parts.append(f"other ids for {', '.join(f'{t!r} ({a[t]} vs {b[t]})' for t in moved)}")
        return "; ".join(parts)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(dense, name, None) != getattr(other, name, None):
            return f"{name} {getattr(other, name, None)} vs dense's {getattr(dense, name, None)}"
    for text in texts:
        x, y = dense.encode(text), other.encode(text)
        if x != y:
            at = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
            return (f"the task prompt {text[:40]!r}{'...' if len(text) > 40 else ''} encodes to other ids (first "
                    f"difference at token {at}: {y[at:at + 3]} vs dense's {x[at:at + 3]})")
    return None


def _tokenizer(path: str):
    """The tokenizer of the model at ``path``: a GGUF file's vocabulary (``llamacpp.GGUFTokenizer``), else
    transformers' ``AutoTokenizer``."""
    from kick_hub.backends.llamacpp import find_gguf

    gguf = find_gguf(path)
    if gguf is not None:
        from kick_hub.backends.llamacpp import GGUFTokenizer

        return GGUFTokenizer(gguf)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def check_sources(model: str, sources: Sequence[ExternalSource], tasks: Sequence[str], data: str) -> None:
    """Refuse (ValueError naming the variant label, the source and the remedy), before any cell runs: a checkpoint
    that is not a causal LM (``_causal_lm``), whose format needs a package that is not installed (``_packages``), or
    any source whose tokenizer differs from ``model``'s (``tokenizer_difference`` on a few prompts of ``tasks`` from
    ``data``; a GGUF file's vocabulary is read by llama.cpp, so a GGUF and a checkpoint of one model compare)."""
    if not sources:
        return
    from kick_hub.models import resolve as resolve_model

    dense = _tokenizer(resolve_model(model))
    texts = prompts(tasks, data)
    for s in sources:
        if not s.gguf:
            _causal_lm(s)
            _packages(s)
        try:
            other = _tokenizer(s.path)
        except (OSError, ValueError) as e:
            raise _refuse(s.label, s.source, f"has no tokenizer that can be loaded ({e})",
                          "save the tokenizer with the checkpoint") from e
        diff = tokenizer_difference(dense, other, texts)
        if diff:
            raise _refuse(s.label, s.source, f"has another tokenizer than the dense model's: {diff}",
                          "its examples would not pair with dense's; compare checkpoints of the same base model")


def layer_sparsity(path: str | Path) -> dict[str, float]:
    """Share of exact zeros in each 2-D floating-point ``*.weight`` matrix of the checkpoint's safetensors files
    outside the embeddings and the head (the linear layers a pruning method zeroes); quantized layers (packed
    integer tensors) are not measured. Reads one tensor at a time."""
    from safetensors import safe_open

    out = {}
    for f in sorted(Path(path).glob("*.safetensors")):
        from kick_hub.variant import CALIBRATION_FILE

        if f.name == CALIBRATION_FILE:
            continue
        with safe_open(str(f), framework="pt") as fh:
            for name in fh.keys():
                if not name.endswith(".weight") or re.search(r"embed|lm_head|wte|wpe|norm", name):
                    continue
                sl = fh.get_slice(name)
                if len(sl.get_shape()) != 2 or sl.get_dtype() not in ("F32", "F16", "BF16", "F64"):
                    continue
                t = fh.get_tensor(name)
                out[name] = float((t == 0).sum()) / t.numel()
    return out


def provenance(source: ExternalSource) -> dict:
    """What the report and the card show of an external cell, stored as its ``manifest`` (``variants.manifest``):
    ``external`` (source, revision asked, commit, notes, weights_sha256, format, quantization_config, files),
    ``layer_sparsity`` (``layer_sparsity``), ``sparsity`` (weight-count-weighted over those layers) with its
    ``sparsity_summary`` (layers, min, max), ``bits_per_weight`` and ``file_bytes`` / ``weight_bytes``
    (``variant.storage_summary``), and ``label`` / ``method`` (``external``)."""
    from safetensors import safe_open

    from kick_hub.variant import storage_summary

    if source.gguf:
        return _gguf_provenance(source)
    fmt, quant = checkpoint_format(source.path)
    sparsity = layer_sparsity(source.path)
    sizes = {}
    for f in sorted(Path(source.path).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as fh:
            for name in sparsity:
                if name in fh.keys():
                    shape = fh.get_slice(name).get_shape()
                    sizes[name] = shape[0] * shape[1]
    total = sum(sizes.values())
    stored = storage_summary(source.path)
    return {
        "label": source.label, "method": "external",
        "external": {"source": source.public_source, "revision": source.revision, "commit": source.commit,
                     "notes": source.notes, "weights_sha256": source.weights_sha256, "format": fmt,
                     "quantization_config": quant, "files": [p.name for p in weight_files(source.path)]},
        "layer_sparsity": sparsity,
        "sparsity": sum(sparsity[n] * sizes[n] for n in sizes) / total if total else None,
        "sparsity_summary": ({"layers": len(sparsity), "min": min(sparsity.values()), "max": max(sparsity.values())}
                             if sparsity else {"layers": 0, "min": None, "max": None}),
        "bits_per_weight": stored["bits_per_weight"], "weight_bytes": stored["weight_bytes"],
        "file_bytes": stored["file_bytes"], "parameters": stored["parameters"],
    }


def _gguf_provenance(source: ExternalSource) -> dict:
    """``provenance`` of a GGUF file, from its headers (``compress.methods.gguf.read_tensor_types``): format
    ``gguf``, its file type as the quant type, the count of each tensor type, bits per weight over every tensor; no
    sparsity is measured (block-quantized tensors)."""
    import gguf

    from kick_hub.compress.methods.gguf import read_tensor_types

    info = read_tensor_types(source.path)
    try:
        ftype = gguf.LlamaFileType(int(info["file_type"])).name.removeprefix("MOSTLY_")
    except (TypeError, ValueError):
        ftype = str(info["file_type"])
    size = Path(source.path).stat().st_size
    return {
        "label": source.label, "method": "external",
        "external": {"source": source.public_source, "revision": source.revision, "commit": source.commit,
                     "notes": source.notes,
                     "weights_sha256": source.weights_sha256, "format": "gguf",
                     "quantization_config": {"quant_type": ftype, "tensor_types": info["tensor_types"],
                                             "architecture": info["architecture"]},
                     "files": [Path(source.path).name]},
        "layer_sparsity": {}, "sparsity": None, "sparsity_summary": {"layers": 0, "min": None, "max": None},
        "bits_per_weight": info["bits_per_weight"], "weight_bytes": info["tensor_bytes"], "file_bytes": size,
        "parameters": info["parameters"],
    }


def describe(manifest: dict) -> list[str]:
    """One row of the provenance table for an external cell's ``manifest`` (``provenance``): source, revision
    (commit, short), weights sha256 (short), format, quantization, sparsity (mean [min-max] over its layers), bits
    per weight, bytes on disk."""
    from kick_hub.io import format_size

    e = manifest.get("external") or {}
    quant = e.get("quantization_config") or {}
    q = ", ".join(f"{k}={_short(quant[k])}" for k in ("bits", "group_size", "format", "quant_type",
                                                       "bnb_4bit_quant_type", "load_in_4bit", "load_in_8bit")
                  if quant.get(k) not in (None, False)) or ("-" if not quant else "yes")
    groups = quant.get("config_groups") if isinstance(quant, dict) else None
    if isinstance(groups, dict):  # compressed-tensors: the scheme of each group
        q = "; ".join(f"{(g.get('weights') or {}).get('num_bits')}-bit {(g.get('weights') or {}).get('type')} "
                      f"{(g.get('weights') or {}).get('strategy')}" for g in groups.values() if isinstance(g, dict))
    s = manifest.get("sparsity_summary") or {}
    sparsity = ("-" if not s.get("layers") else
                f"{manifest['sparsity']:.1%} [{s['min']:.1%}-{s['max']:.1%}] over {s['layers']} layers")
    bits = manifest.get("bits_per_weight")
    return [manifest.get("label", ""), e.get("source", ""), (e.get("commit") or "-")[:12],
            (e.get("weights_sha256") or "")[:12], e.get("format", ""), q, sparsity,
            f"{bits:.2f}" if bits else "-", format_size(manifest["file_bytes"]) if manifest.get("file_bytes") else "-"]


def _short(value: Any) -> str:
    """A config value in a table cell: a serialised config object (torchao's ``{"_type": ...}``) by its type name."""
    if isinstance(value, dict):
        if "_type" in value:
            return str(value["_type"])
        inner = [_short(v) for v in value.values()]
        return "/".join(inner) if inner else "-"
    return str(value)


PROVENANCE_HEADER = ["variant", "source", "commit", "weights sha256", "format", "quantization",
                     "sparsity (mean [min-max])", "bits per weight", "on disk"]
