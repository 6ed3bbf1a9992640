"""Token ids once per run (``backends.transformers.token_ids_shared``): engines whose tokenizers save the same files
share their texts' ids inside the block, and a sweep's local cells tokenize each text once with the same scores."""

import contextlib
from collections import Counter

import pytest
from transformers import AutoTokenizer

from kick_hub.backends import transformers as backend
from kick_hub.backends.transformers import TransformersEngine, token_ids_shared, tokenizer_fingerprint
from kick_hub.bench import plan, sweep
from kick_hub.bench.store import Store
from kick_hub.scoring import perplexity

TEXT = "Sada Holhar works in Kelford."


@pytest.fixture
def tokenizations(monkeypatch):
    """Counts the real tokenizer calls behind ``TransformersEngine.token_ids``, per text."""
    calls: Counter = Counter()
    real = perplexity.token_ids

    def counted(tokenizer, text):
        calls[text] += 1
        return real(tokenizer, text)

    monkeypatch.setattr(perplexity, "token_ids", counted)
    return calls


@pytest.fixture(scope="module")
def saved_tokenizer(world_engine, tmp_path_factory):
    """The world tokenizer saved to its own directory, as a variant's copy is."""
    path = tmp_path_factory.mktemp("tokenizer")
    world_engine.tokenizer.save_pretrained(path)
    return path


def test_the_fingerprint_is_what_the_tokenizer_does(world_engine, saved_tokenizer):
    """A copy loaded from another directory has the dense tokenizer's fingerprint; an added token, another BOS flag
    or another chat template each give another one (and, for the first two, other ids)."""
    dense = world_engine.tokenizer
    assert tokenizer_fingerprint(AutoTokenizer.from_pretrained(saved_tokenizer)) == tokenizer_fingerprint(dense)
    added = AutoTokenizer.from_pretrained(saved_tokenizer)
    added.add_tokens(["Holhar"])
    no_bos = AutoTokenizer.from_pretrained(saved_tokenizer, add_bos_token=False)
    template = AutoTokenizer.from_pretrained(saved_tokenizer)
    template.chat_template = "{{ messages[0]['content'] }}"
    prints = {tokenizer_fingerprint(t) for t in (dense, added, no_bos, template)}
    assert len(prints) == 4 and None not in prints
    ids = perplexity.token_ids(dense, TEXT)
    assert perplexity.token_ids(added, TEXT) != ids and perplexity.token_ids(no_bos, TEXT) == ids[1:]


def test_state_the_saved_files_miss_is_seen_or_nothing_is_shared(world_engine, saved_tokenizer):
    """``split_special_tokens`` set on a loaded tokenizer is not saved, but changes ids: another fingerprint, so
    inside a block each engine keeps its own ids. A tokenizer that saves no file has no fingerprint."""
    text = "<|user|> " + TEXT + "</s>"
    split = AutoTokenizer.from_pretrained(saved_tokenizer)
    split.split_special_tokens = True
    plain = TransformersEngine(world_engine.model, AutoTokenizer.from_pretrained(saved_tokenizer))
    other = TransformersEngine(world_engine.model, split)
    assert tokenizer_fingerprint(split) != tokenizer_fingerprint(plain.tokenizer)
    with token_ids_shared():
        assert plain.token_ids(text) == perplexity.token_ids(world_engine.tokenizer, text)
        assert other.token_ids(text) == perplexity.token_ids(split, text) != plain.token_ids(text)

    class SavesNothing:
        def __getattr__(self, name):
            return getattr(world_engine.tokenizer, name)

        def __call__(self, *args, **kwargs):
            return world_engine.tokenizer(*args, **kwargs)

        def save_pretrained(self, path):
            pass

    assert tokenizer_fingerprint(SavesNothing()) is None


def test_threads_get_the_right_ids_while_blocks_open_and_close(world_engine, saved_tokenizer):
    """Engines called from threads while blocks open and close (a judge, the Space): the right ids, no error."""
    import threading

    engines = [TransformersEngine(world_engine.model, AutoTokenizer.from_pretrained(saved_tokenizer))
               for _ in range(3)]
    texts = [f"{TEXT} {k}" for k in range(20)]
    expected = [perplexity.token_ids(world_engine.tokenizer, t) for t in texts]
    errors, wrong, stop = [], [], threading.Event()

    def work(engine):
        try:
            while not stop.is_set():
                for text, ids in zip(texts, expected):
                    if engine.token_ids(text) != ids:
                        wrong.append(text)
        except Exception as e:  # noqa: BLE001 - the test reports any error
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for _ in range(30):
        with token_ids_shared():
            engines[0].token_ids(texts[0])
    stop.set()
    for t in threads:
        t.join()
    assert errors == [] and wrong == []


def test_engines_share_ids_inside_the_block_only(world_engine, saved_tokenizer, tokenizations):
    model = world_engine.model
    first = TransformersEngine(model, AutoTokenizer.from_pretrained(saved_tokenizer))
    second = TransformersEngine(model, AutoTokenizer.from_pretrained(saved_tokenizer))
    added = AutoTokenizer.from_pretrained(saved_tokenizer)
    added.add_tokens(["Holhar"])
    other = TransformersEngine(model, added)
    expected = perplexity.token_ids(world_engine.tokenizer, TEXT)
    tokenizations.clear()
    assert first.token_ids(TEXT) == first.token_ids(TEXT) == expected
    assert tokenizations[TEXT] == 2  # outside the block: no sharing
    with token_ids_shared():
        got = first.token_ids(TEXT)
        got.append(-1)  # a caller's list is its own
        assert second.token_ids(TEXT) == first.token_ids(TEXT) == expected
        assert tokenizations[TEXT] == 3
        assert other.token_ids(TEXT) == perplexity.token_ids(added, TEXT) != expected  # its own ids
        with token_ids_shared():  # nested: the outer block's ids
            assert second.token_ids(TEXT) == expected
        assert tokenizations[TEXT] == 5
    assert backend._TOKEN_MEMO is None
    assert second.token_ids(TEXT) == expected and tokenizations[TEXT] == 6


def test_a_tokenizer_changed_between_blocks_gets_its_new_ids(world_engine, saved_tokenizer):
    engine = TransformersEngine(world_engine.model, AutoTokenizer.from_pretrained(saved_tokenizer))
    with token_ids_shared():
        before = engine.token_ids(TEXT)
    engine.tokenizer.add_tokens(["Holhar"])
    with token_ids_shared():
        assert engine.token_ids(TEXT) == perplexity.token_ids(engine.tokenizer, TEXT) != before


def test_a_sweep_tokenizes_each_text_once_with_the_same_scores(tmp_path, monkeypatch, tokenizations):
    """Dense and two variants, two tasks: every text is tokenized once for the three cells, and the scores equal
    those of the same sweep with nothing shared."""
    cells = plan.plan(["magnitude"], [0.3, 0.6], [], [])
    opts = dict(limit=8, progress=False)

    sweep.run("world", tmp_path / "shared", cells, ["factoid-qa", "mcq-reasoning"], **opts).close()
    assert tokenizations and max(tokenizations.values()) == 1
    once = sum(tokenizations.values())
    tokenizations.clear()
    monkeypatch.setattr(backend, "token_ids_shared", contextlib.nullcontext)
    sweep.run("world", tmp_path / "plain", cells, ["factoid-qa", "mcq-reasoning"], **opts).close()
    assert sum(tokenizations.values()) >= 3 * once
    with contextlib.closing(Store(tmp_path / "shared", None)) as shared, \
            contextlib.closing(Store(tmp_path / "plain", None)) as plain:
        assert shared.scores() == plain.scores()
