"""LLM-KICK instruction-following: reference-based ROUGE-L plus distinct-n and unique-token statistics."""

import datasets
import evaluate

from .kick_text import diversity
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
Instruction following as in LLM-KICK (Vicuna-80 / MT-Bench single turn). Reference-based: ROUGE-L F-measure of each
answer against a reference answer (gpt-3.5-turbo's, as LLM-KICK's pairwise judge used), plus distinct-1/2/3 (share
of distinct n-grams over all answers), the number of unique lower-cased tokens and mean answer length. ROUGE-L is the
arithmetic mean of per-example F-measures with icsum's Unicode-aware tokens; distinct-n and lengths count lower-cased
whitespace tokens, each character of CJK, Thai and other scripts written without spaces a token of its own. A
prediction with no tokens scores ROUGE-L 0; an empty predictions list or a blank reference is a ValueError. The LLM
judge score (pairwise or single-answer, 1-10) needs a judge model and is produced by
`kick evaluate --task instruction-following --judge ...`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): the model's answers.
    references (list of str): reference answers.
Returns:
    rougeL, distinct_1, distinct_2, distinct_3 (floats in [0, 1]), unique_tokens, mean_length (floats).
Examples:
    >>> m = evaluate.load("llmkick/instruction-following")
    >>> round(m.compute(predictions=["a b c"], references=["a b c"])["distinct_1"], 2)
    1.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class InstructionFollowing(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric", description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
            reference_urls=["https://github.com/VITA-Group/llm-kick", "https://github.com/lm-sys/FastChat"],
        )

    def _compute(self, predictions, references):
        predictions, references = list(predictions), list(references)
        return {"rougeL": rouge(predictions, references)["rougeL"], **diversity(predictions)}
