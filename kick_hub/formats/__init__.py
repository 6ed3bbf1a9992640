"""On-disk formats kick registers with transformers, so ``AutoModelForCausalLM.from_pretrained`` loads them:
``sparse_bitmask`` (pruned weights as non-zero values + bitmask)."""
