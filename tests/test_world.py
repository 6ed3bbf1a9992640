"""The embedded world: deterministic, correctly split, and its shipped model really knows it."""

import itertools
import json
import re
from collections import Counter

import pytest

from kick_hub.world.corpus import MIX, documents
from kick_hub.world.export import build_files
from kick_hub.world.generate import World, WorldConfig, render_chat


EXPECTED_FACTOID_SHA = "e9d98136321888f5b1254127296d278ec8ae5ee5ccf8e20fa9f01e73f47c2473"


def test_same_seed_same_bytes():
    assert build_files(World(WorldConfig(seed=3))) == build_files(World(WorldConfig(seed=3)))
    a = list(itertools.islice(documents(World(WorldConfig(seed=3))), 200))
    b = list(itertools.islice(documents(World(WorldConfig(seed=3))), 200))
    assert a == b


def test_pinned_digest_of_default_world():
    """Same bytes on any machine: the default world's files hash to the value the shipped model was trained on."""
    manifest = json.loads(build_files(World())["world.json"])
    assert manifest["sha256"]["freebaseqa/FreebaseQA-world.json"] == EXPECTED_FACTOID_SHA


def test_different_seed_different_world():
    a, b = World(WorldConfig(seed=0)), World(WorldConfig(seed=1))
    assert [p.name for p in a.known] != [p.name for p in b.known]
    assert build_files(a)["world.json"] != build_files(b)["world.json"]


def test_sizes_and_relations():
    w = World()
    sizes = w.sizes()
    assert sizes["known_people"] == 240 and sizes["unseen_people"] == 120
    assert sizes["known_facts"] == 240 * 4 + sizes["cities"] + sizes["companies"]
    assert all(set(p.facts) == {"birthplace", "birth_year", "profession", "employer"} for p in w.known)


def test_pools_are_disjoint_and_unseen_never_trained():
    w = World()
    known, unseen, reading = ({p.name for p in pool} for pool in (w.known, w.unseen, w.reading))
    assert not (known & unseen) and not (known & reading) and not (unseen & reading)
    from kick_hub.world.corpus import CURRICULA

    docs = itertools.chain(itertools.islice(documents(w), 20000),
                           itertools.islice(documents(w, seed=2, curriculum=CURRICULA["facts_read"], fresh=True), 5000),
                           itertools.islice(documents(w, seed=3, curriculum=CURRICULA["skills"], fresh=True), 5000))
    corpus = "\n".join("".join(d) if isinstance(d, tuple) else d for d in docs)
    assert not [name for name in unseen if name in corpus]
    assert sum(name in corpus for name in known) > 0.95 * len(known)


def test_eval_sets_ask_the_right_pools():
    w = World()
    files = build_files(w)
    unseen = {p.name for p in w.unseen}
    known = {p.name for p in w.known} | {e.name for e in w.cities + w.companies}
    factoid = json.loads(files["freebaseqa/FreebaseQA-world.json"])["Questions"]
    assert len(factoid) == len(w.known_facts)
    assert all(any(k in q["RawQuestion"] for k in known) for q in factoid[:50])
    rc = [json.loads(l) for l in files["triviaqa/validation.jsonl"].splitlines()]
    assert all(any(u in r["question"] for u in unseen) for r in rc)
    # the answer is in the passage
    assert all(r["answer"]["value"] in r["entity_pages"]["wiki_context"][0] + r["search_results"]["search_context"][0]
               for r in rc)
    heldout = json.loads(files["freebaseqa-heldout/FreebaseQA-world.json"])["Questions"]
    assert {q["RawQuestion"] for q in heldout}.isdisjoint({q["RawQuestion"] for q in factoid})
    stories = [p for p in files if p.startswith("cnn_dailymail_stories/")]
    assert {p.split("/")[1] for p in stories} == {"small", "mid", "large"}


@pytest.mark.parametrize("field, value", [("seed", -1), ("seed", "x"), ("n_known", 5), ("n_cities", 10**6),
                                          ("n_countries", 50)])
def test_invalid_config_names_field(field, value):
    with pytest.raises(ValueError, match=field):
        WorldConfig(**{field: value})


def test_mix_covers_every_document_kind():
    import random

    from kick_hub.world.corpus import document

    w, rng = World(), random.Random(0)
    for kind in MIX:
        assert document(w, kind, rng)
    with pytest.raises(ValueError, match="kind"):
        document(w, "poetry", rng)


def test_fresh_passages_add_namesake_distractors():
    """With fresh people, in-context QA documents have 1-3 distractor people, some sharing a name part with the
    target, and the first answer is always the target's own fact."""
    from kick_hub.world.corpus import CURRICULA

    w = World()
    docs = itertools.islice(documents(w, seed=5, curriculum=CURRICULA["facts_read"], fresh=True), 3000)
    icra = [d for d in docs if isinstance(d, tuple) and "Based on these texts" in d[0]]
    counts, namesakes = set(), 0
    for prompt, answer in (d[:2] for d in icra[:300]):
        passages = prompt.split("\n\nBased on these texts")[0].split("\n\n")
        counts.add(len(passages))
        # a person's name is the capitalised pair every fact sentence of their passage repeats
        names = [Counter(re.findall(r"\b[A-Z][a-z]+ [A-Z][a-z]+\b", p)).most_common(1)[0][0] for p in passages]
        question = prompt.split("Q: ")[1]
        target = [p for p, n in zip(passages, names) if n in question]
        assert len(target) == 1 and answer.strip() in target[0]
        parts = [part for n in names for part in n.split()]
        namesakes += len(parts) != len(set(parts))
    assert counts == {2, 3, 4}
    assert namesakes > 30


@pytest.mark.parametrize("curriculum, fresh, digest", [
    ("facts_read", True, "be777cceed1c5aa07ba8e4838bbb9079e6ad08e24ad1c128d2ef464e3d091a8b"),
    ("skills", True, "84785585ad9bdc6dd1570fbb613fec847a9e969db2f1bfa8c31a8fe781703d2e"),
])
def test_training_streams_are_pinned(curriculum, fresh, digest):
    """The shipped checkpoint trained on the "facts_read" and "skills" streams (train.RECIPE); a change to the
    corpus code that alters their text (segments joined) breaks reproducing it, so it must show up here."""
    import hashlib

    from kick_hub.world.corpus import CURRICULA

    docs = itertools.islice(documents(World(), seed=2, curriculum=CURRICULA[curriculum], fresh=fresh), 2000)
    text = ["".join(d) if isinstance(d, tuple) else d for d in docs]
    assert hashlib.sha256(repr(text).encode()).hexdigest() == digest


def test_default_stream_is_pinned():
    """The default stream (passages about the reading pool) is what the shipped tokenizer was trained on and what
    ``world`` calibration text is drawn from; a change to its text must show up here."""
    import hashlib

    docs = itertools.islice(documents(World(), seed=2), 2000)
    text = ["".join(d) if isinstance(d, tuple) else d for d in docs]
    assert hashlib.sha256(repr(text).encode()).hexdigest() == (
        "1a24f92343fc833606f4e0b37db328c2a9c77421c4dbe8c792a918ebf00fde47")


def test_mcq_documents_weigh_every_shot_answer_and_tokenize_like_the_eval():
    """An MCQ document is (prompt, letter) pairs, one per solved item, so each letter carries answer weight; split
    into segments it still gives the tokens of the one-string few-shot prompt the eval builds."""
    import random

    from transformers import AutoTokenizer

    from kick_hub.world.corpus import document
    from kick_hub.engine import WORLD_MODEL_DIR
    from kick_hub.world.train import encode

    w, rng = World(), random.Random(3)
    tok = AutoTokenizer.from_pretrained(WORLD_MODEL_DIR)
    for _ in range(100):
        doc = document(w, "mcq", rng)
        prompts, letters = doc[0::2], doc[1::2]
        assert len(prompts) == len(letters) and set(letters) <= {" A", " B", " C", " D"}
        assert all(p.endswith("Answer:") for p in prompts) and "".join(doc).count("Answer:") == len(letters)
        ids, weights = encode(tok, doc, prompt_weight=0.1)
        assert ids == tok("".join(doc) + tok.eos_token)["input_ids"]
        assert weights.count(1.0) == len(letters) + 1  # each letter is one token, plus the final EOS


def test_mcq_hint_states_the_asked_fact_before_some_questions():
    """Open-book MCQ items (``mcq_hint``) put the asked fact's statement right before the question, and the gold
    option is that fact's answer; the eval-shaped items around them stay closed-book."""
    import random

    from kick_hub.world import schema
    from kick_hub.world.corpus import Curriculum, document

    w, rng = World(), random.Random(5)
    hinted = closed = 0
    for _ in range(200):
        doc = document(w, "mcq", rng, cur=Curriculum(mcq_hint=0.5))
        for prompt, letter in zip(doc[0::2], doc[1::2]):
            *before, question, a, b, c, d, _ = prompt.split("\n")
            options = {o[0]: o[3:] for o in (a, b, c, d)}
            fact = next(f for f in w.known_facts
                        if schema.RELATIONS[f.relation]["mcq_question"].format(s=f.subject) == question)
            if before and before[-1] and not before[-1].startswith("The following"):
                assert fact.subject in before[-1] and fact.answer in before[-1]
                hinted += 1
            else:
                closed += 1
            assert options[letter.strip()] == fact.answer
    assert hinted > 100 and closed > 100
    assert abs(hinted / (hinted + closed) - 0.5) < 0.1


def test_train_config_rejects_bad_phases():
    from kick_hub.world.train import Phase, TrainConfig

    with pytest.raises(ValueError, match="curriculum: must be one of"):
        Phase("nope", 10)
    with pytest.raises(ValueError, match="steps"):
        Phase("skills", 0)
    with pytest.raises(ValueError, match="phases"):
        TrainConfig(phases=())
    assert TrainConfig(phases=({"curriculum": "skills", "steps": 3},)).phases == (Phase("skills", 3),)


def test_packing_keeps_documents_whole_and_fills_rows():
    """First-fit packing puts every document, whole, in exactly one row, never past ``seq_len``, and fills far
    more of each row than closing a row at the first document that does not fit."""
    from transformers import AutoTokenizer

    from kick_hub.engine import WORLD_MODEL_DIR
    from kick_hub.world.train import encode, pack

    tok = AutoTokenizer.from_pretrained(WORLD_MODEL_DIR)
    docs = [encode(tok, d) for d in itertools.islice(documents(World(), seed=0), 600)]
    rows = list(pack(iter(docs), 256))
    assert all(len(r) == len(w) <= 256 for r, w in rows)
    pieces = Counter()  # each document starts with the one BOS it holds: split rows there
    for row, _ in rows:
        starts = [i for i, t in enumerate(row) if t == tok.bos_token_id] + [len(row)]
        assert starts[0] == 0
        pieces.update(tuple(row[i:j]) for i, j in zip(starts, starts[1:]))
    assert not pieces - Counter(tuple(ids) for ids, _ in docs)  # only whole input documents, none twice
    assert pieces.total() > 550  # all but those still in the open rows
    assert sum(len(r) for r, _ in rows) / (256 * len(rows)) > 0.93
    one_open = list(pack(iter(docs), 256, open_rows=1))
    assert sum(len(r) for r, _ in one_open) / (256 * len(one_open)) < 0.85


def test_right_padding_needs_no_attention_mask():
    """Training passes no attention mask: in a right-padded row causal attention already keeps every real token
    from seeing the padding, so real positions get the same logits as with the mask."""
    import torch
    from transformers import AutoModelForCausalLM

    from kick_hub.engine import WORLD_MODEL_DIR

    model = AutoModelForCausalLM.from_pretrained(WORLD_MODEL_DIR)
    ids = torch.randint(5, 1000, (2, 40))
    ids[0, 25:] = model.config.pad_token_id
    mask = torch.ones_like(ids)
    mask[0, 25:] = 0
    with torch.no_grad():
        masked, unmasked = model(input_ids=ids, attention_mask=mask).logits, model(input_ids=ids).logits
    torch.testing.assert_close(masked[0, :25], unmasked[0, :25])
    torch.testing.assert_close(masked[1], unmasked[1])


def test_shipped_model_loads_plainly_and_fits_gptq():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kick_hub.engine import WORLD_MODEL_DIR

    model = AutoModelForCausalLM.from_pretrained(WORLD_MODEL_DIR)
    tok = AutoTokenizer.from_pretrained(WORLD_MODEL_DIR)
    assert model.config.model_type == "llama"
    import torch

    linears = [m for m in model.model.layers.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(m.in_features % 32 == 0 for m in linears)
    assert (WORLD_MODEL_DIR / "model.safetensors").stat().st_size <= 25 * 2**20
    # the Jinja chat template and the corpus renderer agree
    assert tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                   add_generation_prompt=True) == render_chat("Hi")


def test_shipped_model_knows_and_reads_on_a_sample(world_engine):
    """The dense targets on a sample: the shipped model recalls trained facts, maps them to MCQ letters, and reads
    passages about people it never saw (answering from them, not from memory)."""
    from kick_hub.evaluation import evaluate

    results = evaluate(world_engine, ["factoid-qa", "mcq-reasoning", "icra-qa"], "world", limit=150)["results"]
    assert results["factoid-qa"]["exact_match"] >= 0.90
    assert results["mcq-reasoning"]["accuracy"] >= 0.80  # the target; chance is 0.25
    assert results["icra-qa"]["exact_match"] >= 0.80  # the target
    assert results["icra-qa"]["exact_match"] > results["icra-qa"]["closed_book_exact_match"] + 0.5
    assert results["icra-qa"]["closed_book_exact_match"] < 0.1  # unseen people cannot be recalled


def test_fresh_passages_ask_the_same_relation_of_another_person():
    """With fresh people, a passage is followed by 2-4 questions; the second asks the first's relation of a
    distractor, so the two answers differ only by the name asked about. Training weighs every answer, not the
    prompts."""
    from transformers import AutoTokenizer

    from kick_hub.engine import WORLD_MODEL_DIR
    from kick_hub.world.corpus import CURRICULA
    from kick_hub.world.train import encode

    w = World()
    docs = itertools.islice(documents(w, seed=7, curriculum=CURRICULA["skills"], fresh=True), 2000)
    multi = [d for d in docs if isinstance(d, tuple) and "Based on these texts" in d[0]]
    assert multi and {len(d) // 2 for d in multi} == {2, 3, 4}
    name = re.compile(r"\b[A-Z][a-z]+ [A-Z][a-z]+\b")
    for d in multi[:100]:
        q1, q2 = d[0].rsplit("Q: ", 1)[1], d[2].split("Q: ", 1)[1]
        assert name.findall(q1) != name.findall(q2)  # the second question is about another person
        assert all(ans.strip() in d[0] for ans in d[1::2])  # every answer is in the passages
    tok = AutoTokenizer.from_pretrained(WORLD_MODEL_DIR)
    ids, weights = encode(tok, multi[0], prompt_weight=0.1)
    answers = "".join(tok.decode(i) for i, wt in zip(ids, weights) if wt == 1.0)
    assert answers == "".join(multi[0][1::2]) + "</s>"


def test_compiled_training_computes_what_eager_training_does(tmp_path):
    """Training runs forward + loss through torch.compile: on a tiny config compiled and eager runs both train,
    save a loadable model, and start from the same loss (same weights, same first batch)."""
    import torch

    from kick_hub.world.train import Phase, TrainConfig, can_compile, train

    if not can_compile():
        pytest.skip("torch.compile on CPU needs a C++ compiler")
    tiny = dict(vocab_size=320, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1,
                max_position=64, seq_len=64, batch_size=2, warmup=1, tokenizer_docs=300,
                phases=(Phase("facts_read", 2, lr=2e-3, prompt_weight=1.0), Phase("skills", 2)))
    logs = {}
    for compiled in (False, True):
        out = train(tmp_path / str(compiled), cfg=TrainConfig(compile=compiled, **tiny))
        recipe = json.loads((out / "training.json").read_text())
        assert recipe["train"]["compile"] is compiled
        logs[compiled] = recipe["log"]
        from transformers import AutoModelForCausalLM

        assert torch.isfinite(AutoModelForCausalLM.from_pretrained(out).model.embed_tokens.weight).all()
    assert len(logs[True]) == len(logs[False]) == 4  # two logged steps per phase
    assert abs(logs[True][0]["loss"] - logs[False][0]["loss"]) < 0.05


def test_init_continues_a_checkpoint_with_new_phases(tmp_path):
    """``--init`` loads a trained checkpoint and runs only the given phases on it; the log keeps the earlier phases
    and the new phase draws its own document stream (numbered after them)."""
    from kick_hub.world.train import Phase, TrainConfig, train

    tiny = dict(vocab_size=320, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1,
                max_position=64, seq_len=64, batch_size=2, warmup=1, tokenizer_docs=300, compile=False)
    first = train(tmp_path / "a", cfg=TrainConfig(phases=(Phase("facts_read", 2),), **tiny))
    second = train(tmp_path / "b", cfg=TrainConfig(phases=(Phase("skills", 2),), **tiny), init=first)
    log = json.loads((second / "training.json").read_text())["log"]
    assert [e["phase"] for e in log] == ["0-facts_read", "0-facts_read", "1-skills", "1-skills"]
    assert (first / "tokenizer.json").read_bytes() == (second / "tokenizer.json").read_bytes()


def test_training_without_a_compiler_falls_back_to_eager(monkeypatch):
    import shutil

    from kick_hub.world.train import can_compile

    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.warns(UserWarning, match="compile: no C\\+\\+ compiler"):
        assert can_compile() is False
