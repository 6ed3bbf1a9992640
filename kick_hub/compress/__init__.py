"""Compression: pruning (magnitude, magnitude-global, random, Wanda, SparseGPT; unstructured or N:M) and
quantization (GPTQ via transformers -> optimum -> GPTQModel; int8 / LLM.int8 / NF4 weight-only).

- ``spec``: ``CompressSpec``, what to do, validated before any work;
- ``registry``: method name -> the module in ``methods/`` that implements it;
- ``pipeline``: ``make_variant`` (load -> check -> calibrate -> apply -> measure -> save) and ``compress`` (apply to a
  model in memory);
- ``blockwise``: the model structure methods work on and the block-by-block calibration loop;
- ``calibration``: calibration token ids; ``memory``: RSS measurement and allocator tuning.
"""

from __future__ import annotations

from kick_hub.compress.pipeline import check_compressed, check_model, check_plan, compress, make_variant
from kick_hub.compress.spec import (CALIBRATED, GPTQ_BITS, METHODS, PRUNING_METHODS, QUANT_METHODS, CompressSpec,
                                    parse_pattern)

__all__ = ["CALIBRATED", "GPTQ_BITS", "METHODS", "PRUNING_METHODS", "QUANT_METHODS", "CompressSpec", "check_compressed",
           "check_model", "check_plan", "compress", "make_variant", "parse_pattern"]
