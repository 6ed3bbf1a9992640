"""LLM-KICK perplexity: token-level perplexity of a causal LM on a text set."""

import datasets
import evaluate
import torch

from .kick_perplexity import check_embeddable, context_length, embedding_rows, perplexity, safe_pad_id, token_ids

_CITATION = """\
@inproceedings{jaiswal2024compressing,
  title={Compressing LLMs: The Truth is Rarely Pure and Never Simple},
  author={Jaiswal, Ajay and Gan, Zhe and Du, Xianzhi and Zhang, Bowen and Wang, Zhangyang and Yang, Yinfei},
  booktitle={International Conference on Learning Representations},
  year={2024}
}
"""

_DESCRIPTION = """\
Token-level perplexity, exp(total negative log-likelihood / predicted tokens), of a causal LM over a list of texts,
each text scored on its own (first token conditioned on BOS when the tokenizer adds one; a text longer than the
model's context is scored in windows of the context length that start half a context apart, every token after the first
scored exactly once; nothing is cut; inf where exp overflows). An empty list, a blank text or a text with no token to predict is a
ValueError naming predictions (its perplexity is undefined, not 1). Padded positions are masked and filled with an id
the model can embed, so a tokenizer pad token past the embedding matrix gives the same result at every batch size; a
text token the model cannot embed is a ValueError naming it. Non-finite (NaN / inf) logits at a scored position are a
ValueError naming model_id: a number computed from them would not be the model's perplexity. LLM-KICK's point is
that this number moves little while knowledge tasks collapse. The model is loaded with transformers' AutoModelForCausalLM (never with
trust_remote_code).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): the texts to score.
    model_id (str): Hub id or local directory of a causal LM.
    batch_size (int): texts per forward pass (default 16).
Returns:
    perplexity (float), nll (mean negative log-likelihood per token), tokens (int), perplexities (per text).
Examples:
    >>> m = evaluate.load("llmkick/perplexity")
    >>> m.compute(predictions=["Once upon a time"], model_id="path/to/model")["perplexity"]  # doctest: +SKIP
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Perplexity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric", description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
            reference_urls=["https://github.com/VITA-Group/llm-kick"],
        )

    def _compute(self, predictions, model_id=None, batch_size=16):
        predictions = list(predictions)
        if not predictions:
            raise ValueError("predictions: must not be empty")
        blank = [i for i, t in enumerate(predictions) if not isinstance(t, str) or not t.strip()]
        if blank:
            raise ValueError(f"predictions: must be non-blank texts; element {blank[0]} is empty or blank")
        if not model_id:
            raise ValueError("model_id: required (a Hub id or a local model directory)")
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size: must be a positive integer, got {batch_size!r}")
        model, tokenizer = _load(model_id)
        encoded = [token_ids(tokenizer, t) for t in predictions]
        # A text of one token (BOS included) has no token to predict: its perplexity would read exp(0) = 1.
        short = [i for i, ids in enumerate(encoded) if len(ids) < 2]
        if short:
            raise ValueError(f"predictions: element {short[0]} has no token to predict (one token long)")
        rows = embedding_rows(model)
        check_embeddable(tokenizer, encoded, rows, "predictions")
        pad = safe_pad_id(tokenizer.pad_token_id, rows)  # masked out: any id the model can embed
        result = perplexity(model, encoded, context_length(model), batch_size, pad)
        bad = result.pop("non_finite")
        flags = result.pop("per_example_non_finite")
        if bad:
            raise ValueError(f"model_id: {model_id!r} gives non-finite (NaN / inf) logits for {bad} of "
                             f"{len(flags)} texts (first: element {flags.index(True)}); its perplexity is undefined")
        result["perplexities"] = result.pop("per_example")
        return result


def _load(model_id):
    """(model, tokenizer) in float32 through transformers' Auto classes, never with trust_remote_code; a model that
    is not a causal LM or has no tokenizer is a ValueError naming model_id."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(model_id)
    except OSError as e:
        raise ValueError(f"model_id: cannot load {model_id!r} (not a local model directory or a Hub id reachable "
                         f"now): {e}") from e
    if (getattr(config, "quantization_config", None) or {}).get("quant_method") == "sparse-bitmask":
        raise ValueError(f"model_id: {model_id!r} is saved in kick-hub's sparse-bitmask layout; score it with "
                         f"`kick evaluate --task perplexity` (pip install kick-hub), or save it dense")
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ValueError(f"model_id: {model_id!r} is a {config.model_type!r} model, not a causal LM")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_id)
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"model_id: {model_id!r} has no usable tokenizer ({e})") from e
    model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.float32)
    model.eval()
    return model, tokenizer
