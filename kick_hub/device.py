"""Where a model runs: the device, the dtype and (for models larger than one device) accelerate's device map.

One ``Placement`` travels from the CLI (``--device``, ``--dtype``, ``--device-map``, ``--max-memory``) to
``load_model`` / ``Engine.from_name`` (evaluation), ``make_variant`` (compression) and the sweep, and is recorded in
manifests, results and cards (``Placement.to_dict``: what was asked; ``Resolved.to_dict``: what it resolved to).

Resolution (``resolve``), before any weight is read:

- device ``auto``: ``cuda`` when ``torch.cuda.is_available()``, else ``mps`` when available, else ``cpu``; ``cuda``,
  ``cuda:N`` and ``mps`` must be present;
- dtype ``auto``: the checkpoint config's ``dtype`` / ``torch_dtype`` on an accelerator, float32 on CPU; bfloat16
  needs a GPU with bf16 support (``torch.cuda.is_bf16_supported``); compression on CPU needs float32 (the
  calibration statistics, SparseGPT's OBS updates and the masks are computed in the model's dtype there);
- device map ``auto`` (evaluation only): the model is spread by accelerate over the devices of ``max_memory`` (all
  GPUs and the CPU when it is not given); ``check_fits`` estimates its size from the config on the meta device
  (accelerate's ``compute_module_sizes``) and refuses a model that does not fit, with the estimate and what would.

Every refusal is a ``ValueError`` naming the option and the allowed values (the CLI exits 2).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: ``kick --help`` builds the parser without it
    import torch

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICE_MAPS = ("auto",)
PURPOSES = ("evaluate", "compress")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")
# what --max-memory keys may be: a GPU index, or the CPU (accelerate also knows "mps", "disk"; disk offload is not
# offered: a model that needs it is refused)
MAX_MEMORY_KEYS = ("N (a GPU index)", "cpu", "mps")


@dataclass(frozen=True)
class Placement:
    """What the user asked for: ``device`` one of ``DEVICES`` (``cuda:N`` with an index), ``dtype`` one of
    ``DTYPES``, ``device_map`` None or ``"auto"`` (accelerate spreads the model over the devices), ``max_memory``
    None or device -> size as accelerate takes it (``{0: "20GiB", "cpu": "60GiB"}``)."""

    device: str = "auto"
    dtype: str = "auto"
    device_map: str | None = None
    max_memory: dict | None = None

    def to_dict(self) -> dict:
        """The asked values as plain JSON types (max_memory keys as strings)."""
        out = asdict(self)
        if self.max_memory is not None:
            out["max_memory"] = {str(k): v for k, v in self.max_memory.items()}
        return out


CPU = Placement(device="cpu", dtype="float32")


@dataclass(frozen=True)
class Resolved:
    """What a ``Placement`` resolved to on this machine: ``device`` (``cpu``, ``cuda:N``, ``mps``; under a device
    map the device of the input embeddings), ``dtype`` (a ``torch.dtype``), ``device_map`` (None or ``"auto"``),
    ``max_memory`` (device -> bytes, only under a device map), ``asked`` (the ``Placement``)."""

    device: str
    dtype: torch.dtype
    asked: Placement
    device_map: str | None = None
    max_memory: dict | None = None

    def to_dict(self) -> dict:
        """``{"device", "dtype", "device_map", "asked": Placement.to_dict()}`` as plain JSON types (``dtype`` as
        ``"float32"``...), the form manifests, results and cards record."""
        return {"device": self.device, "dtype": dtype_name(self.dtype), "device_map": self.device_map,
                "asked": self.asked.to_dict()}


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).removeprefix("torch.")


# ------------------------------------------------------------------ syntax (argparse validators call these)
def parse_device(value: str) -> str:
    """``value`` when it is one of ``DEVICES`` (``cuda:N`` with a non-negative integer N); a ValueError naming
    ``device`` and the allowed values otherwise. Syntax only: whether the device is present is ``resolve_device``'s."""
    if not isinstance(value, str) or not _DEVICE_RE.match(value):
        raise ValueError(f"device: must be one of {', '.join(DEVICES)}, got {value!r}")
    return value


def parse_dtype(value: str) -> str:
    """``value`` when it is one of ``DTYPES``; a ValueError naming ``dtype`` and the allowed values otherwise."""
    if value not in DTYPES:
        raise ValueError(f"dtype: must be one of {', '.join(DTYPES)}, got {value!r}")
    return value


def parse_device_map(value: str | None) -> str | None:
    """None or ``"auto"``; a ValueError naming ``device-map`` otherwise."""
    if value is not None and value not in DEVICE_MAPS:
        raise ValueError(f"device-map: must be one of {', '.join(DEVICE_MAPS)}, got {value!r}")
    return value


def parse_max_memory(text: str | dict | None) -> dict | None:
    """``"0=20GiB,1=20GiB,cpu=60GiB"`` -> ``{0: "20GiB", 1: "20GiB", "cpu": "60GiB"}`` (accelerate's form; a dict
    is checked the same way). Keys: a GPU index or ``cpu`` / ``mps``; sizes: an integer byte count or a number with
    a unit accelerate's ``convert_file_size_to_int`` reads (``KiB``, ``MiB``, ``GiB``, ``KB``, ``MB``, ``GB``),
    positive. A ValueError naming ``max-memory`` and the form otherwise."""
    from accelerate.utils import convert_file_size_to_int

    if text is None:
        return None
    form = "DEVICE=SIZE[,DEVICE=SIZE...] (e.g. 0=20GiB,1=20GiB,cpu=60GiB; DEVICE a GPU index, cpu or mps)"
    if isinstance(text, dict):
        items = [(str(k), str(v)) for k, v in text.items()]
    else:
        items = []
        for part in str(text).split(","):
            key, eq, size = part.strip().partition("=")
            if not eq or not key.strip() or not size.strip():
                raise ValueError(f"max-memory: must be {form}, got {text!r}")
            items.append((key.strip(), size.strip()))
    if not items:
        raise ValueError(f"max-memory: must be {form}, got {text!r}")
    out: dict = {}
    for key, size in items:
        if key.isdigit():
            device: int | str = int(key)
        elif key in ("cpu", "mps"):
            device = key
        else:
            raise ValueError(f"max-memory: device must be one of {', '.join(MAX_MEMORY_KEYS)}, got {key!r}")
        if device in out:
            raise ValueError(f"max-memory: device {key!r} is given twice")
        try:
            n = convert_file_size_to_int(int(size) if size.isdigit() else size)
        except ValueError:
            n = -1
        if n <= 0:
            raise ValueError(f"max-memory: size for {key!r} must be a positive byte count or a number with a unit "
                             f"(KiB, MiB, GiB, KB, MB, GB), got {size!r}")
        out[device] = int(size) if size.isdigit() else size
    return out


def make_placement(device: str = "auto", dtype: str = "auto", device_map: str | None = None,
                   max_memory: str | dict | None = None) -> Placement:
    """A ``Placement`` from option values, each checked (``parse_*``); ``max_memory`` without ``device_map`` is
    refused (it only sizes accelerate's device map)."""
    placement = Placement(parse_device(device), parse_dtype(dtype), parse_device_map(device_map),
                          parse_max_memory(max_memory))
    if placement.max_memory is not None and placement.device_map is None:
        raise ValueError("max-memory: only with --device-map auto (it sets how much of each device the map may use)")
    return placement


# ------------------------------------------------------------------ what this machine has
def _mps_available() -> bool:
    """Whether torch sees an Apple GPU (MPS)."""
    import torch

    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def available_devices() -> list[str]:
    """The devices present here: ``cpu``, then ``cuda:0`` ... ``cuda:N-1``, then ``mps`` when present."""
    import torch

    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        out.append("mps")
    return out


def resolve_device(device: str) -> str:
    """The concrete device for ``device`` (``parse_device`` syntax): ``auto`` -> ``cuda:0`` when CUDA is present,
    else ``mps`` when present, else ``cpu``; ``cuda`` -> ``cuda:0``. A ValueError naming ``device``, what is present
    and the allowed values when the device asked for is not there."""
    import torch

    device = parse_device(device)
    here = available_devices()
    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        if not torch.cuda.is_available():
            raise ValueError(f"device: {device!r} asked for, but this machine has no CUDA device (torch "
                             f"{torch.__version__}, torch.cuda.is_available() is False); present: {', '.join(here)}; "
                             f"use one of {', '.join(DEVICES)} that is present (auto picks it)")
        if index >= torch.cuda.device_count():
            raise ValueError(f"device: {device!r} asked for, but this machine has {torch.cuda.device_count()} CUDA "
                             f"device(s); present: {', '.join(here)}")
        return f"cuda:{index}"
    if not _mps_available():
        raise ValueError(f"device: 'mps' asked for, but this machine has no MPS (Apple GPU) device; present: "
                         f"{', '.join(here)}")
    return "mps"


def checkpoint_dtype(config) -> torch.dtype:
    """The dtype a checkpoint's config names (``dtype``, or ``torch_dtype`` in older configs; float32 when it names
    none, as transformers reads it). For a multimodal config, its text config's when the top level names none."""
    import torch

    for cfg in (config, getattr(config, "text_config", None)):
        for key in ("dtype", "torch_dtype"):
            value = getattr(cfg, key, None) if cfg is not None else None
            if isinstance(value, str) and value not in ("auto", ""):
                value = getattr(torch, value, None)
            if isinstance(value, torch.dtype) and value.is_floating_point:
                return value
    return torch.float32


def resolve_dtype(dtype: str, device: str, config=None, purpose: str = "evaluate") -> torch.dtype:
    """The ``torch.dtype`` for ``dtype`` (``DTYPES``) on the resolved ``device``: ``auto`` -> the checkpoint's
    (``checkpoint_dtype(config)``) on an accelerator, float32 on CPU. A ValueError naming ``dtype`` and the allowed
    values for bfloat16 on a CUDA GPU without bf16 support, and for 16-bit dtypes when ``purpose`` is ``compress``
    on CPU (the statistics and weight updates need float32 there)."""
    import torch

    parse_dtype(dtype)
    if purpose not in PURPOSES:
        raise ValueError(f"purpose: must be one of {list(PURPOSES)}, got {purpose!r}")
    if dtype == "auto":
        out = torch.float32 if device == "cpu" or config is None else checkpoint_dtype(config)
    else:
        out = getattr(torch, dtype)
    if out == torch.bfloat16 and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        name = torch.cuda.get_device_name(torch.device(device))
        raise ValueError(f"dtype: bfloat16 needs a GPU with bf16 support; {device} ({name}) has none; use one of "
                         f"float16, float32" + (" (the checkpoint is bfloat16: give --dtype float16 or float32)"
                                                if dtype == "auto" else ""))
    if purpose == "compress" and device == "cpu" and out != torch.float32:
        raise ValueError(f"dtype: compression on CPU runs in float32 (its calibration statistics, masks and weight "
                         f"updates need it); got {dtype_name(out)}; use --dtype float32 or auto, or a GPU device")
    return out


def resolve(placement: Placement | None, config=None, purpose: str = "evaluate") -> Resolved:
    """Resolve ``placement`` (None: ``Placement()``, i.e. auto / auto) on this machine for ``purpose``
    (``evaluate`` or ``compress``); ``config`` is the checkpoint's (for dtype ``auto``). Checks everything before
    any weight is read: ``resolve_device``, ``resolve_dtype``, and for a device map that ``purpose`` is evaluate
    (compression holds the model in CPU memory and moves one block at a time to the device) and that the
    ``max_memory`` devices are present. ``check_fits`` (which needs the config) is the loader's."""
    placement = placement or Placement()
    if placement.device_map is None:
        device = resolve_device(placement.device)
        return Resolved(device, resolve_dtype(placement.dtype, device, config, purpose), placement)
    parse_device_map(placement.device_map)
    if purpose == "compress":
        raise ValueError("device-map: only for evaluation; compression holds the model in CPU memory and moves one "
                         "decoder block at a time to --device (give --device instead)")
    memory = parse_max_memory(placement.max_memory) or default_max_memory()
    for key in memory:
        name = key if isinstance(key, str) else f"cuda:{key}"
        if name != "cpu":
            try:
                resolve_device("mps" if name == "mps" else name)
            except ValueError as e:
                raise ValueError(f"max-memory: names device {key!r}, which is not here "
                                 f"({str(e).partition(': ')[2]})") from None
    gpus = [k for k in memory if not isinstance(k, str)]
    first = f"cuda:{min(gpus)}" if gpus else ("mps" if "mps" in memory else "cpu")
    dtype = resolve_dtype(placement.dtype, first, config, purpose)
    return Resolved(first, dtype, placement, "auto", memory)


def default_max_memory() -> dict:
    """accelerate's ``get_max_memory()``: the free memory of every GPU (by index) and the available CPU RAM, in
    bytes."""
    from accelerate.utils import get_max_memory

    return get_max_memory()


# ------------------------------------------------------------------ sizes
def format_bytes(n: float) -> str:
    """``1536 * 2**20`` -> ``"1.50 GiB"``; MiB below one GiB."""
    return f"{n / 2 ** 30:.2f} GiB" if n >= 2 ** 30 else f"{n / 2 ** 20:.1f} MiB"


def empty_model(config):
    """The model ``config`` describes with no weights (accelerate's ``init_empty_weights``: every parameter on the
    meta device), for size estimates and device maps; nothing is read from disk."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    model.tie_weights()  # a tied head is one tensor, as loaded
    return model


def estimate_bytes(config, dtype: torch.dtype) -> int:
    """The model's weights and buffers in ``dtype``, in bytes (accelerate's ``compute_module_sizes`` over
    ``empty_model(config)``; integer tensors keep their size)."""
    from accelerate.utils import compute_module_sizes

    return int(compute_module_sizes(empty_model(config), dtype=dtype)[""])


def check_fits(config, resolved: Resolved) -> dict:
    """The device map accelerate would use (``infer_auto_device_map`` over ``empty_model(config)`` in
    ``resolved.dtype`` within ``resolved.max_memory``, decoder blocks kept whole), or a ValueError naming
    ``max-memory`` with the estimate and what would fit when the model does not fit the devices (it would need disk
    offload, which is not offered). Nothing is loaded."""
    import torch

    from accelerate.utils import compute_module_sizes, convert_file_size_to_int, infer_auto_device_map

    model = empty_model(config)
    sizes = compute_module_sizes(model, dtype=resolved.dtype)
    total = int(sizes[""])
    memory = {k: convert_file_size_to_int(v) for k, v in resolved.max_memory.items()}
    device_map = infer_auto_device_map(model, max_memory=dict(memory), dtype=resolved.dtype,
                                       no_split_module_classes=getattr(model, "_no_split_modules", None) or [])
    if "disk" not in device_map.values() and total <= sum(memory.values()):
        return device_map
    capacity = sum(memory.values())
    shown = ", ".join(f"{k}={format_bytes(v)}" for k, v in memory.items())
    smaller = [name for name, dt in (("float16", torch.float16), ("bfloat16", torch.bfloat16))
               if dt.itemsize < resolved.dtype.itemsize]
    hint = ""
    if smaller:
        half = int(compute_module_sizes(model, dtype=torch.float16)[""])
        hint = (f"; in {smaller[0]} it would take {format_bytes(half)}"
                + (" and fit" if half <= capacity else ""))
    raise ValueError(f"max-memory: the model needs about {format_bytes(total)} in {dtype_name(resolved.dtype)} "
                     f"(accelerate's estimate from its config), but the devices offer {format_bytes(capacity)} "
                     f"({shown}); models up to about {format_bytes(capacity)} fit (each device keeps room for the "
                     f"largest decoder block){hint}; give more --max-memory, more devices, or a smaller --dtype")


def input_device(model) -> torch.device:
    """Where a model's inputs go: the device of its input embeddings (the first device of a device map)."""
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if emb is not None and getattr(emb, "weight", None) is not None:
        return emb.weight.device
    return next(model.parameters()).device


def empty_cache() -> None:
    """Hand cached accelerator memory back (``torch.cuda.empty_cache`` / ``torch.mps.empty_cache``); a no-op on
    CPU."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if _mps_available():
        torch.mps.empty_cache()


# ----------------------------------------------------------------- CPU threads
THREAD_SOURCES = ("--threads", "OMP_NUM_THREADS", "cgroup CPU quota", "CPU affinity")


def cgroup_cpus(root: str = "/sys/fs/cgroup") -> int | None:
    """CPUs the cgroup quota under ``root`` allows (``ceil(quota / period)``; cgroup v2 ``cpu.max``, else v1
    ``cpu/cpu.cfs_quota_us`` / ``cpu/cpu.cfs_period_us``), or None when there is no quota."""
    import math
    from pathlib import Path

    root = Path(root)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota == "max":
            return None
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def resolve_threads(threads: int | None = None) -> tuple[int, str]:
    """``(count, source)``: the torch threads work should run on. ``threads`` (``--threads``) when given; else
    ``OMP_NUM_THREADS`` (the variable OpenMP, MKL and torch itself honour; for an OpenMP list such as ``4,2`` its
    first entry); else the CPUs this process may use: its CPU affinity, capped by the cgroup CPU quota (a container
    or CI runner limited to 2 CPUs on a 64-core host gets 2, not 64). ``source`` is one of ``THREAD_SOURCES``.
    Raises ValueError for a ``threads`` below 1 and for an ``OMP_NUM_THREADS`` that is not a positive count. On a
    machine whose cores are busy, fewer threads than cores can be much faster (docs/performance.md, Threads)."""
    import os

    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads: must be a positive integer, got {threads!r}")
        return int(threads), "--threads"
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env:  # OpenMP's syntax: a positive count, or a comma list whose first entry is this level's count
        first = env.split(",")[0].strip()
        if not (first.isdigit() and int(first) > 0):
            raise ValueError(f"OMP_NUM_THREADS: must be a positive integer (or an OpenMP list such as 4,2), got "
                             f"{env!r}; fix or unset it, or give --threads")
        return int(first), "OMP_NUM_THREADS"
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpus()
    if quota is not None and quota < affinity:
        return quota, "cgroup CPU quota"
    return max(1, affinity), "CPU affinity"


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op thread count to ``resolve_threads(threads)`` and return it. SparseGPT's and GPTQ's
    weights depend on the thread count bit for bit, so it is recorded in manifests and results."""
    import torch

    n, _ = resolve_threads(threads)
    torch.set_num_threads(n)
    return n
