"""The plain way to see each prunable layer's calibration inputs, which the tests hold the calibration loop to: a
forward hook on every layer and the whole block run on every row."""

from collections.abc import Callable

import torch

from kick_hub.compress.blockwise import linear_layers


def feed_layer_inputs(block: torch.nn.Module, inputs: list, kwargs: dict,
                      add: Callable[[str, torch.Tensor], None]) -> None:
    """Run ``block`` on every row of ``inputs`` with ``kwargs``; ``add(name, x)`` gets each prunable layer's input."""
    hooks = [lin.register_forward_hook(lambda m, inp, out, n=name: add(n, inp[0].data))
             for name, lin in linear_layers(block).items()]
    try:
        with torch.no_grad():
            for x in inputs:
                block(x, **kwargs)
    finally:
        for h in hooks:
            h.remove()
