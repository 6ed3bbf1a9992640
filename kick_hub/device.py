"""Where a model runs: the device, the dtype and (for models larger than one device) accelerate's device map.

One ``Placement`` travels from the CLI (``--device``, ``--dtype``, ``--device-map``, ``--max-memory``) to
``load_model`` / ``Engine.from_name`` (evaluation), ``make_variant`` (compression) and the sweep, and is recorded in
manifests, results and cards (``Placement.to_dict``: what was asked and what it resolved to).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICE_MAPS = ("auto",)


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
