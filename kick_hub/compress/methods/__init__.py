"""One module per compression method, each with the entry ``registry`` describes (``apply``, and optionally
``check_available`` / ``check_layers`` / ``manifest_entries`` / ``before_save``).

Pruning (``magnitude`` for magnitude, magnitude-global and random; ``wanda``; ``sparsegpt``) rewrites the weights of
every decoder-block Linear / GPT-2 Conv1D in place, on their ``[out, in]`` view (``blockwise.weight_view``), with the
mask rules of ``masks``. Quantization (``gptq``; ``weight_only`` for int8, bnb-int8, nf4) runs a maintained quantizer
through transformers (``hf_quantize``) and returns a new model.
"""
