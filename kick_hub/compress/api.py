"""The method plugin API: how to add a compression method to kick-hub without editing it (docs/playground.md).

A plugin is any object (a module, a class, an instance) with the registry entry every built-in method has::

    name = "owl"                 # the method name in labels, manifests, reports (default: the attribute's name)
    kind = "pruning"             # or "quantization"
    calibrated = True            # whether apply needs calibration token ids

    def apply(model, spec, calibration, progress, device):
        ...                      # pruning: zero weights in place and return model; quantization: return a new model

and optionally ``check_args(args: dict) -> dict`` (``--method-arg key=value``: turn the strings into typed values,
raise ValueError for a bad one; it also receives values it typed already, so it must accept both), ``label(spec) ->
str`` (default: the built-in style, ``owl-50`` plus ``-<key><value>`` per argument), ``version`` (default: the
installed distribution's), and the hooks ``registry`` describes (``check_available``, ``check_layers``,
``check_device``, ``compute_device``, ``manifest_entries``, ``before_save``).

It is registered by an entry point of group ``kick_hub.methods`` in its package's ``pyproject.toml``::

    [project.entry-points."kick_hub.methods"]
    owl = "kick_owl:OWL"

or named on the command line as ``--method package.module:name`` (``kick compress``) / ``--methods
package.module:name`` (``kick bench``). ``spec`` is a ``CompressSpec``: ``spec.sparsity`` / ``spec.pattern`` for a
pruning plugin, ``spec.bits`` for a quantizer, ``spec.args`` (sorted key, value pairs; ``dict(spec.args)``),
``spec.seed``. ``calibration`` is int64 token ids ``[nsamples, seqlen]`` (None for a data-free plugin); ``device``
the compute device (None: where the model is).

What kick checks around ``apply`` (``registry.run_plugin``, ``pipeline.check_compressed``): an exception, a return
value that is not a torch module, a pruned model whose parameter shapes changed, or a model left uncompressed
becomes a ``PluginError`` naming the plugin and its version; in a sweep that cell fails (the store's failed table)
and the others go on.

The building blocks below are the ones the built-in methods are made of: the decoder structure and the block-wise
calibration loop (``kick_hub.compress.blockwise``), the mask rules (``kick_hub.compress.methods.masks``, written as
the Wanda reference so masks match it, ties included), Wanda's input-norm statistic and score, and the calibration
ids (``kick_hub.compress.calibration``).
"""

from __future__ import annotations

from kick_hub.compress.blockwise import (decoder_layers, in_features, linear_layers, prunable_layers, run_blockwise,
                                        weight_view)
from kick_hub.compress.calibration import calibration_ids, ids_hash
from kick_hub.compress.methods.masks import lowest_n, nm_mask, row_mask, threshold_mask
from kick_hub.compress.methods.wanda import InputNorm, score as wanda_score
from kick_hub.compress.registry import (ENTRY_POINT_GROUP, PLUGIN_KINDS, Plugin, PluginError, find_plugin,
                                        load_plugin, plugins)
from kick_hub.compress.spec import CompressSpec

__all__ = ["ENTRY_POINT_GROUP", "PLUGIN_KINDS", "CompressSpec", "InputNorm", "Plugin", "PluginError",
           "calibration_ids", "decoder_layers", "find_plugin", "ids_hash", "in_features", "linear_layers",
           "load_plugin", "lowest_n", "nm_mask", "plugins", "prunable_layers", "row_mask", "run_blockwise",
           "threshold_mask", "wanda_score", "weight_view"]
