"""Edge cases of the scoring rules (issue 20, issue 21 item 1): answers emptied by normalisation, empty inputs, the
MCQ letter's position, deterministic ROUGE, sentence splitting for rougeLsum, and non-English text. Each rule is
checked in the library, in the evaluate modules and in the tasks' per-example ``score()`` the Space uses."""

import json
import subprocess
import sys
from pathlib import Path

import evaluate
import pytest

from kick_hub.scoring import mcq, qa, text
from kick_hub.tasks import factoid_qa, icra_qa, icsum, instruction_following, mcq_reasoning

pytestmark = pytest.mark.unit  # needs no model: the fast tier (`pytest -m unit`)

ROOT = Path(__file__).resolve().parents[1]
MODULES = ROOT / "evaluate_metrics"
_LOADED: dict = {}


def one(module, record: dict, output: str) -> float:
    """One output's score from the task's own ``score`` (the one ``kick evaluate`` and the Space run)."""
    record = {"subject": "geography", "bucket": "short", **record}
    return module.score([record], [output])[1][0]["score"]


def load(folder):
    if folder not in _LOADED:
        _LOADED[folder] = evaluate.load(str(MODULES / folder))
    return _LOADED[folder]


# ---------------------------------------------------------------- 1. normalisation that empties an answer

@pytest.mark.parametrize("raw, expected", [("The", "the"), ("A", "a"), ("a.", "a"), ("The The", "the the"),
                                           ("the Who", "who"), ("An apple", "apple"), ("...", "")])
def test_articles_kept_when_removing_them_leaves_nothing(raw, expected):
    assert qa.normalize_answer(raw) == expected


def test_article_only_answers_in_modules():
    preds, refs = ["The", "A"], [["A"], ["A"]]
    assert load("factoid_qa").compute(predictions=preds, references=refs) == {"exact_match": 0.5, "contains": 0.5}
    assert load("icra_qa").compute(predictions=preds, references=refs) == {"exact_match": 0.5, "f1": 0.5}
    assert load("icra_qa").compute(predictions=preds, references=refs, protocol="llm-kick") == {
        "exact_match": 0.5, "f1": 0.5}
    assert load("factoid_qa").compute(predictions=preds, references=refs, protocol="llm-kick") == {"exact_match": 0.5}


def test_article_only_answers_in_task_scores():
    assert one(factoid_qa, {"answers": ["A"]}, "The") == 0.0
    assert one(factoid_qa, {"answers": ["A"]}, "A") == 1.0
    assert one(icra_qa, {"answers": ["A"]}, " The ") == 0.0
    assert one(icra_qa, {"answers": ["A"]}, " A ") == 1.0


@pytest.mark.parametrize("pred", ["", "   ", "\n", "?!", "..."])
@pytest.mark.parametrize("protocol", ["default", "llm-kick"])
def test_empty_prediction_never_hits(pred, protocol):
    # aliases include ones that normalise to nothing, which an empty prediction used to equal
    refs = [["Paris", "...", "!"]]
    factoid = qa.score_factoid([pred], refs, protocol)
    icra = qa.score_icra([pred], refs, protocol)
    assert factoid["exact_match"] == 0.0 and factoid.get("contains", 0.0) == 0.0
    assert icra["exact_match"] == 0.0 and icra["f1"] == 0.0
    assert qa.f1(pred, ["..."]) == 0.0
    assert qa.exact_match(pred, ["..."]) == 0.0
    assert qa.llm_kick_lenient_em(pred, ["Paris"]) == 0.0
    assert one(factoid_qa, {"answers": refs[0]}, pred) == 0.0
    assert one(icra_qa, {"answers": refs[0]}, pred) == 0.0


def test_blank_aliases_never_match():
    assert qa.llm_kick_factoid_hit("The answer is Lyon", ["", "Paris"]) == 0.0
    assert qa.llm_kick_lenient_em("Lyon", ["  ", "Paris"]) == 0.0
    assert qa.contains("Lyon", ["", "Paris"]) == 0.0
    assert qa.score_factoid(["Paris"], [["", "Paris"]])["exact_match"] == 1.0
    with pytest.raises(ValueError, match=r"references: .*non-blank alias.*element 1"):
        qa.score_icra(["a", "b"], [["a"], ["", "  "]])
    with pytest.raises(ValueError, match="references"):
        load("factoid_qa").compute(predictions=["x"], references=[[" "]])


# ---------------------------------------------------------------- 2. MCQ letter read from the wrong place

@pytest.mark.parametrize("generated, letter", [
    ("B", "B"), (" B", "B"), (" B.", "B"), ("(B)", "B"), ("b", "B"), (" (c)", "C"), ("**D**", "D"), ("Ｂ", "B"),
    ("B) foo", "B"), ("B. Paris", "B"), ("(C) because it is", "C"),
    ("Answer: B", "B"), ("answer: c", "C"), ("The answer is (C).", "C"), ("Option D", "D"),
    (" B\n\nNext question ...\nAnswer: A", "B"), ("\n\nD\nA", "D"),
    ("Because it is blue", ""), ("A dog", ""), ("a dog", ""), ("Vitamin D is needed", ""), ("B is right", ""),
    (" 7", ""), ("", ""), ("   \n ", ""), ("E", ""), ("I don't know\nAnswer: A", ""),
])
def test_extract_letter_reads_first_option_letter(generated, letter):
    assert mcq.extract_letter(generated) == letter


def test_mcq_task_score_reads_first_letter():
    assert one(mcq_reasoning, {"answer": "B"}, " B\n\nNext question ...\nAnswer: A") == 1.0
    assert one(mcq_reasoning, {"answer": "B"}, " B.") == 1.0
    assert one(mcq_reasoning, {"answer": "B"}, "Because") == 0.0
    assert one(mcq_reasoning, {"answer": "A"}, "") == 0.0


def test_mcq_module_reads_generations_like_the_task():
    preds = [" B\n\nNext question ...\nAnswer: A", " b.", "Because", "A dog", "", "Answer: D"]
    refs = ["B", "B", "B", "A", "A", "D"]
    got = load("mcq_reasoning").compute(predictions=preds, references=refs)
    assert got == {"accuracy": pytest.approx(3 / 6), "invalid": 3}
    assert mcq.score_mcq(preds, refs)["per_example"] == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0]


# ---------------------------------------------------------------- 5. deterministic ROUGE

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec "
         "romeo sierra tango").split()

_ROUGE_SCRIPT = """
import json, sys
import evaluate
words = sys.argv[1].split()
ref = " ".join(words)
preds = [" ".join(words[:k]) for k in range(1, len(words) + 1)]
icsum = evaluate.load(sys.argv[2] + "/icsum").compute(predictions=preds, references=[ref] * len(preds))
inst = evaluate.load(sys.argv[2] + "/instruction_following").compute(predictions=preds, references=[ref] * len(preds))
print(json.dumps({"icsum": icsum, "rougeL_if": inst["rougeL"]}))
"""


def _fresh_rouge() -> dict:
    out = subprocess.run([sys.executable, "-c", _ROUGE_SCRIPT, " ".join(WORDS), str(MODULES)], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_rouge_is_the_mean_and_identical_across_processes():
    first, second = _fresh_rouge(), _fresh_rouge()
    assert first == second
    n = len(WORDS)
    # distinct words with distinct stems: prefix k has precision 1 and recall k/n (bigrams: (k-1)/(n-1), none at k=1)
    uni = sum(2 * k / (n + k) for k in range(1, n + 1)) / n
    bi = sum(2 * (k - 1) / (n - 1 + k - 1) for k in range(2, n + 1)) / n
    assert len({text.UnicodeTokenizer().tokenize(w)[0] for w in WORDS}) == n
    for key in ("rouge1", "rougeL", "rougeLsum"):
        assert first["icsum"][key] == pytest.approx(uni, rel=1e-12)
        assert first["icsum"][key] == pytest.approx(0.6383932364146119, rel=1e-12)  # issue 20's value
    assert first["icsum"]["rouge2"] == pytest.approx(bi, rel=1e-12)
    assert first["icsum"]["rouge2"] == pytest.approx(0.60769152331183, rel=1e-12)
    assert first["rougeL_if"] == pytest.approx(uni, rel=1e-12)


def test_rouge_equals_mean_of_per_example_scores():
    preds = ["the cat sat on the mat", "a dog", "birds fly south in winter. they return in spring"]
    refs = ["a cat sat on a mat", "the dog barked", "birds migrate south for the winter. they come back"]
    per = text.rouge_per_example(preds, refs, "rouge2")
    assert text.rouge(preds, refs)["rouge2"] == pytest.approx(sum(per) / len(per), rel=1e-12)


# ---------------------------------------------------------------- 6. empty inputs

@pytest.mark.parametrize("folder, kwargs", [
    ("factoid_qa", {}), ("icra_qa", {}), ("mcq_reasoning", {}), ("icsum", {}), ("instruction_following", {}),
    ("perplexity", {"model_id": "not-loaded"}),
])
def test_empty_list_names_predictions(folder, kwargs):
    args = {"predictions": []} if folder == "perplexity" else {"predictions": [], "references": []}
    with pytest.raises(ValueError, match="predictions: must not be empty"):
        load(folder).compute(**args, **kwargs)


@pytest.mark.parametrize("call", [
    lambda: text.rouge([], []), lambda: text.rouge_per_example([], []), lambda: text.diversity([]),
    lambda: qa.score_factoid([], []), lambda: qa.score_icra([], []), lambda: mcq.score_mcq([], []),
])
def test_empty_list_names_predictions_in_library(call):
    with pytest.raises(ValueError, match="predictions: must not be empty"):
        call()


def test_perplexity_blank_text_is_an_error():
    with pytest.raises(ValueError, match=r"predictions: .*element 1 is empty or blank"):
        load("perplexity").compute(predictions=["Once upon a time", "  "], model_id="not-loaded")


def test_empty_prediction_scores_zero_rouge():
    got = load("icsum").compute(predictions=["", "a cat sat"], references=["the dog ran", "a cat sat"])
    assert got == {k: pytest.approx(0.5) for k in text.ROUGE_TYPES}
    # no tokens on either side is not a perfect summary
    assert text.rouge(["..."], ["!!!"]) == {k: 0.0 for k in text.ROUGE_TYPES}
    assert text.rouge(["\n\n"], ["the cat sat"]) == {k: 0.0 for k in text.ROUGE_TYPES}
    assert one(icsum, {"reference": "the cat sat"}, "   ") == 0.0
    assert one(instruction_following, {"reference": "the cat sat"}, "") == 0.0
    got = load("instruction_following").compute(predictions=["", "a b"], references=["x y", "a b"])
    assert got == {"rougeL": 0.5, "distinct_1": 1.0, "distinct_2": 1.0, "distinct_3": 0.0, "unique_tokens": 2.0,
                   "mean_length": 1.0}


@pytest.mark.parametrize("folder", ["icsum", "instruction_following"])
def test_blank_reference_is_an_error(folder):
    with pytest.raises(ValueError, match=r"references: must be non-blank texts; element 0"):
        load(folder).compute(predictions=[""], references=[" "])


def test_bad_rouge_type_and_buckets():
    with pytest.raises(ValueError, match=r"rouge_type: must be one of \['rouge1'"):
        text.rouge_per_example(["a"], ["a"], "rouge3x")
    with pytest.raises(ValueError, match="buckets"):
        load("icsum").compute(predictions=["a"], references=["a"], buckets=[None])


# ---------------------------------------------------------------- 7. sentence splitting for rougeLsum

@pytest.mark.parametrize("pred, ref", [
    ("the dog ran! the cat sat!", "the cat sat! the dog ran!"),
    ("the dog ran? the cat sat?", "the cat sat. the dog ran."),
    ("the dog ran\nthe cat sat", "the cat sat.\n\nthe dog ran."),
    ("狗跑了。猫坐着。", "猫坐着。狗跑了。"),
])
def test_rougelsum_splits_at_sentence_ends(pred, ref):
    assert load("icsum").compute(predictions=[pred], references=[ref])["rougeLsum"] == pytest.approx(1.0)


def test_split_sentences():
    assert text.split_sentences("the dog ran! the cat sat!") == "the dog ran!\nthe cat sat!"
    assert text.split_sentences('He said "stop." Then 3.5 kg\n\nwent.') == 'He said "stop."\nThen 3.5 kg\nwent.'
    assert text.split_sentences("北京很大。天气好！") == "北京很大。\n天气好！"


# ---------------------------------------------------------------- issue 21: any script

SENTENCES = {"zh": "北京是中国的首都", "th": "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย",
             "ru": "Москва — столица России.", "ja": "東京は日本の首都です。", "hi": "नई दिल्ली भारत की राजधानी है"}


@pytest.mark.parametrize("lang", sorted(SENTENCES))
def test_identical_non_english_text_scores_one(lang):
    s = SENTENCES[lang]
    assert load("icsum").compute(predictions=[s], references=[s]) == {k: 1.0 for k in text.ROUGE_TYPES}
    assert load("instruction_following").compute(predictions=[s], references=[s])["rougeL"] == 1.0
    assert one(icsum, {"reference": s}, s) == 1.0
    assert one(instruction_following, {"reference": s}, s) == 1.0
    assert load("factoid_qa").compute(predictions=[s], references=[[s]]) == {"exact_match": 1.0, "contains": 1.0}
    assert load("icra_qa").compute(predictions=[s], references=[[s]]) == {"exact_match": 1.0, "f1": 1.0}
    assert load("icra_qa").compute(predictions=[s], references=[[s]], protocol="llm-kick")["exact_match"] == 1.0


def test_scripts_without_spaces_are_split_into_characters():
    assert text.UnicodeTokenizer().tokenize("北京是首都") == ["北", "京", "是", "首", "都"]
    assert text.UnicodeTokenizer().tokenize("ชื่อ") == ["ชื่", "อ"]  # marks stay with their character
    assert qa.contains("首都是北京。", ["北京"]) == 1.0
    assert qa.f1("北京市", ["北京"]) == pytest.approx(0.8)
    assert text.distinct_n(["北京北京"], 1) == 0.5
    assert text.diversity(["北京 is big"])["mean_length"] == 4.0
    assert text.NO_SPACE_RANGES == qa.NO_SPACE_RANGES
    assert text.split_words("我爱Python和C") == qa.split_words("我爱Python和C") == ["我", "爱", "Python", "和", "C"]


def test_no_space_test_takes_every_range_and_nothing_else():
    """``_no_space`` skips the range scan below the first range; it must agree with the scan on every code point."""
    for module in (text, qa):
        scan = {cp for lo, hi in module.NO_SPACE_RANGES for cp in range(lo, hi + 1)}
        assert all(module._no_space(chr(cp)) == (cp in scan) for cp in range(0x40010))


def test_rouge_tokens_are_computed_once_and_never_shared():
    """Tokens are cached per text (``_tokens``): a caller changing its list changes neither the cache nor the
    next caller's list, and the cache gives what an uncached tokenizer gives."""
    tokenizer = text.UnicodeTokenizer()
    first = tokenizer.tokenize(ENGLISH[0][0])
    first.append("changed")
    again = text.UnicodeTokenizer().tokenize(ENGLISH[0][0])
    assert "changed" not in again and again == first[:-1]
    text._tokens.cache_clear()
    assert text.UnicodeTokenizer().tokenize(ENGLISH[0][0]) == again
    assert text.UnicodeTokenizer(use_stemmer=False).tokenize("Running jumps") == ["running", "jumps"]
    assert text.UnicodeTokenizer().tokenize("Running jumps") == ["run", "jump"]


ENGLISH = [
    ("The quick brown foxes were jumping over 3 lazy dogs' kennels, didn't they? Running_fast (and) well-known.",
     "A quick brown fox jumped over the lazy dog's kennel; it runs fast."),
    ("Officials said the 2024 elections were organised smoothly.",
     "The elections in 2024 went smoothly, officials say."),
    ("", "nothing here"),
]


def test_english_rouge_equals_rouge_score_default_tokenizer():
    from rouge_score import rouge_scorer, tokenize
    from nltk.stem import porter

    default = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    ours = text.rouge([p for p, _ in ENGLISH], [r for _, r in ENGLISH])
    for key in ("rouge1", "rouge2", "rougeL"):
        expected = sum(default.score(r, p)[key].fmeasure for p, r in ENGLISH) / len(ENGLISH)
        assert ours[key] == pytest.approx(expected, rel=1e-12)
    stemmer = porter.PorterStemmer()
    for p, r in ENGLISH:
        for s in (p, r):
            assert text.UnicodeTokenizer().tokenize(s) == tokenize.tokenize(s, stemmer)


def test_english_distinct_n_uses_whitespace_tokens():
    texts = ["Hello, World  foo", "hello world"]
    assert text.words(texts[0]) == ["hello,", "world", "foo"]
    assert text.distinct_n(texts, 1) == 4 / 5


@pytest.mark.parametrize("batch_size", [1, 3, 8, 32])
def test_batch_plan_bounds_padding_and_takes_every_sequence_once(batch_size):
    """``batch_plan``: longest first, each sequence once, at most ``batch_size`` a batch, and a batch of several is
    never padded past ``1 + PAD_SLACK`` times its own tokens. Equal lengths give plain chunks of ``batch_size``."""
    import random

    from kick_hub.scoring.perplexity import PAD_SLACK, batch_plan

    rng = random.Random(batch_size)
    for lengths in ([rng.randint(1, 3000) for _ in range(97)], [rng.choice([10, 11, 500]) for _ in range(40)],
                    [64] * 70, [5], []):
        plan = batch_plan(lengths, batch_size)
        flat = [i for batch in plan for i in batch]
        assert sorted(flat) == list(range(len(lengths)))
        assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
        for batch in plan:
            assert 1 <= len(batch) <= batch_size
            own = sum(lengths[i] for i in batch)
            assert len(batch) == 1 or len(batch) * lengths[batch[0]] <= (1 + PAD_SLACK) * own
        with pytest.raises(ValueError, match="batch_size"):
            batch_plan(lengths, 0)
        if lengths == [64] * 70:
            assert [len(b) for b in plan] == [batch_size] * (70 // batch_size) + ([70 % batch_size] if 70 % batch_size
                                                                                   else [])


def test_batch_plan_keeps_a_long_mmlu_prompt_from_padding_short_ones():
    """SmolLM2's 40 five-shot MMLU prompts: batch size 8 padded them to 1.52x their tokens (the 2,724-token prompt
    padded seven of 682 to 2,207); the plan pads them to 1.12x."""
    from kick_hub.scoring.perplexity import batch_plan

    lengths = [274, 304, 305, 326, 358, 360, 367, 382, 389, 393, 402, 403, 415, 420, 436, 479, 487, 487, 500, 502, 523,
               543, 550, 553, 563, 573, 584, 594, 597, 603, 641, 655, 682, 720, 826, 848, 899, 1293, 2207, 2724]
    plan = batch_plan(lengths, 8)
    assert [[lengths[i] for i in b] for b in plan[:2]] == [[2724, 2207], [1293, 899]]
    padded = sum(len(b) * lengths[b[0]] for b in plan)
    assert round(padded / sum(lengths), 2) == 1.12
    fixed = batch_plan(lengths, 8, slack=float("inf"))  # no bound: plain chunks of 8, longest first
    assert [len(b) for b in fixed] == [8] * 5
    assert round(sum(len(b) * lengths[b[0]] for b in fixed) / sum(lengths), 2) == 1.52


def test_batch_plan_runs_long_sequences_alone_on_a_cpu():
    """With ``solo_from`` a batch whose longest sequence reaches it holds only that length (no padding); shorter
    sequences batch under the padding bound as before. ``solo_from`` is ``CPU_SOLO_TOKENS`` on a CPU only."""
    import torch

    from kick_hub.scoring.perplexity import CPU_SOLO_TOKENS, batch_plan, solo_from

    lengths = [900, 300, 300, 300, 280, 255, 250, 240, 20, 20]
    plan = batch_plan(lengths, 8, solo_from=256)
    assert [[lengths[i] for i in b] for b in plan] == [[900], [300, 300, 300], [280], [255, 250, 240], [20, 20]]
    assert batch_plan(lengths, 8)[0] == [0] and batch_plan(lengths, 8)[1] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert batch_plan([512] * 10, 4, solo_from=256) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]  # equal windows batch
    assert solo_from(torch.device("cpu")) == solo_from("cpu") == CPU_SOLO_TOKENS == 256
    assert solo_from(torch.device("cuda", 0)) is None and solo_from("meta") is None
    for bad in (0, -1, True, 2.5, float("nan"), "256"):
        with pytest.raises(ValueError, match=r"solo_from: must be an int of at least 1, or None, got "):
            batch_plan(lengths, 8, solo_from=bad)
