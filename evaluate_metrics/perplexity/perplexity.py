"""LLM-KICK perplexity: token-level perplexity of a causal LM on a text set."""

import datasets
import evaluate

from .kick_engine import Engine

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
each text scored on its own (first token conditioned on BOS when the tokenizer adds one; texts longer than the
model's context are cut to their last tokens). An empty list, a blank text or a text with no token to predict is a
ValueError naming predictions (its perplexity is undefined, not 1). LLM-KICK's point is that this number moves little
while knowledge tasks collapse. The model is loaded with transformers' AutoModelForCausalLM (never with
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
        engine = Engine.from_name(model_id, batch_size=batch_size)
        # A text of one token (BOS included) has no token to predict: its perplexity would read exp(0) = 1.
        short = [i for i, t in enumerate(predictions) if len(engine.token_ids(t)) < 2]
        if short:
            raise ValueError(f"predictions: element {short[0]} has no token to predict (one token long)")
        result = engine.perplexity(predictions)
        result["perplexities"] = result.pop("per_example")
        return result
