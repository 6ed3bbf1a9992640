"""LLM-KICK icsum: in-context summarization (CNN/DailyMail, three story lengths) scored by ROUGE."""

import datasets
import evaluate

from .kick_text import rouge

_CITATION = """\
@inproceedings{jaiswal2024compressing,
  title={Compressing LLMs: The Truth is Rarely Pure and Never Simple},
  author={Jaiswal, Ajay and Gan, Zhe and Du, Xianzhi and Zhang, Bowen and Wang, Zhangyang and Yang, Yinfei},
  booktitle={International Conference on Learning Representations},
  year={2024}
}
"""

_DESCRIPTION = """\
In-context summarization as in LLM-KICK (CNN/DailyMail stories in small / mid / large length buckets). ROUGE-1/2/L/
Lsum F-measures (rouge-score package, Porter stemmer), each the arithmetic mean of the per-example F-measures, overall
and, with buckets, per length bucket. Tokens are Unicode-aware (any script; characters of CJK, Thai and other scripts
written without spaces are tokens of their own; English scores equal rouge-score's). For rougeLsum, texts are split
into sentences at . ! ? (before whitespace), 。！？ and newlines. A prediction with no tokens scores 0; an empty
predictions list or a blank reference is a ValueError. LLM-judge
scores (coherence, consistency, fluency, relevance; 1-10) need a judge model and are produced by
`kick evaluate --task icsum --judge ...`, not by this module.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated summaries.
    references (list of str): reference summaries (the stories' @highlight lines).
    buckets (list of str, optional): length bucket of each story (small, mid, large).
Returns:
    rouge1, rouge2, rougeL, rougeLsum (floats in [0, 1]); with buckets: per_bucket {bucket: {rouge..., n}}.
Examples:
    >>> m = evaluate.load("llmkick/icsum")
    >>> m.compute(predictions=["a cat sat"], references=["a cat sat"])["rougeL"]
    1.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Icsum(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric", description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
            reference_urls=["https://github.com/VITA-Group/llm-kick", "https://github.com/abisee/cnn-dailymail"],
        )

    def _compute(self, predictions, references, buckets=None):
        predictions, references = list(predictions), list(references)
        scores = rouge(predictions, references)
        if buckets is not None:
            if not isinstance(buckets, (list, tuple)) or not all(isinstance(b, str) for b in buckets):
                raise ValueError("buckets: must be a list of strings (small, mid, large)")
            if len(buckets) != len(predictions):
                raise ValueError("buckets: must be as long as predictions")
            scores["per_bucket"] = {}
            for b in sorted(set(buckets)):
                idx = [i for i, x in enumerate(buckets) if x == b]
                part = rouge([predictions[i] for i in idx], [references[i] for i in idx])
                scores["per_bucket"][b] = {**part, "n": len(idx)}
        return scores
