"""Guided decoding (guide.py): the bytes a hand-built trie boosts, worked out by hand, and the sampler that
adds them: strength 0 is the plain sampler bit for bit, rows are independent, both token layouts."""

import random

import mlx.core as mx
import numpy as np
import pytest

from mlx_megabyte import instruct, models, protocol
from mlx_megabyte.batching import Batcher
from mlx_megabyte.generation import fit_context, generate
from mlx_megabyte.guide import WordGuide, guide_for_prompt
from mlx_megabyte.instruct import Record, uses_word
from mlx_megabyte.models.megabyte.config import ModelConfig
from mlx_megabyte.sampling import make_sampler
from mlx_megabyte.text import EOT, encode_prompt
from mlx_megabyte.tokens import BYTES, TEXT

from .helpers import job_texts

WORDS = ["kite", "river", "run"]


def after(guide: WordGuide, text: str):
    state = guide.first()
    for byte in text.encode():
        state = guide.advance(state, byte)
    return state


def boosted(guide: WordGuide, text: str) -> str:
    return "".join(map(chr, guide.bonus_bytes(after(guide, text))))


def test_at_a_word_start_the_first_bytes_of_every_unused_word_in_both_cases():
    guide = WordGuide(WORDS, 2.0)
    for text in ("", "The ", "Said: ", 'She said "', "\n\n", "3", "Tom'", "\u201c"):  # nothing, or no letter last
        assert boosted(guide, text) == "KRkr", text
    bonus = guide.bonus([after(guide, "The ")], TEXT, 256)[0]
    assert bonus.dtype == np.float32 and np.flatnonzero(bonus).tolist() == [ord(c) for c in "KRkr"]
    assert set(bonus[bonus != 0].tolist()) == {2.0}


def test_inside_a_prefix_the_bytes_that_continue_a_word():
    guide = WordGuide(WORDS, 2.0)
    assert boosted(guide, "The k") == "Ii"
    assert boosted(guide, "The Ki") == "Tt"  # matching ignores case
    assert boosted(guide, "r") == "IUiu"  # river and run
    assert boosted(guide, "ru") == "Nn"
    assert boosted(guide, "kit") == "EIei"  # kite, kiting
    assert boosted(guide, "run") == ""  # a form spelled already asks for no more of its word (not "runs")


def test_after_a_mismatch_nothing_until_the_next_word_begins():
    guide = WordGuide(WORDS, 2.0)
    for text in ("The kx", "The kxe", "hot", "hotk", "hotki", "Sk", "r\u00e9"):
        assert boosted(guide, text) == "", text
    assert boosted(guide, "The kx ") == "KRkr"
    assert boosted(guide, "hotk.") == "KRkr"


def test_a_word_written_whole_is_dropped():
    guide = WordGuide(WORDS, 2.0)
    assert after(guide, "kite").used == frozenset()  # not yet: "kiteboard" would not be the word
    assert after(guide, "kite ").used == {0} and boosted(guide, "kite ") == "Rr"
    assert after(guide, "A kite, a river").used == {0}  # river is not whole until a character that ends it
    assert boosted(guide, "A kite, a river") == ""  # ... but asks for no more bytes
    assert after(guide, "A kite, a river.").used == {0, 1} and boosted(guide, "A kite, a river.") == "Rr"
    assert after(guide, "Kites! Running \u201criver\u201d").used == {0, 1, 2}
    assert boosted(guide, "Kites! Running \u201criver\u201d ") == ""
    assert after(guide, "kiteboard rivers").used == frozenset()  # "rivers" not ended yet, kiteboard no form
    assert boosted(guide, "A kite, k") == ""  # kite is used: its prefix earns nothing


def test_a_word_counts_exactly_when_uses_word_says_so():
    """Random texts of few characters (letters of the words, other letters, spaces, punctuation, a
    two-byte letter and a three-byte quote): the guide's used words are uses_word's, once a character
    that is no letter follows."""
    guide = WordGuide(WORDS, 1.0)
    rng = random.Random(3)
    alphabet = "kiteKITEsdrvunRgx .,'\"\u00e9\u201c1"
    for _ in range(400):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) + " "
        want = {i for i, word in enumerate(WORDS) if uses_word(text, word)}
        assert after(guide, text).used == want, text


def test_the_bytes_layout_shifts_every_id_by_one():
    guide = WordGuide(WORDS, 3.0)
    bonus = guide.bonus([after(guide, ""), after(guide, "ki")], BYTES, 258)
    assert np.flatnonzero(bonus[0]).tolist() == [ord(c) + 1 for c in "KRkr"]
    assert np.flatnonzero(bonus[1]).tolist() == [ord(c) + 1 for c in "Tt"]


def recording(log):
    """Greedy, and keeps every logits array it is given."""

    def sample(logits, *keys):
        log.append(np.array(logits))
        return mx.argmax(logits, axis=-1).astype(mx.int32)

    return sample


@pytest.mark.parametrize("layout", [TEXT, BYTES])
def test_each_row_moves_on_by_its_own_draws(layout):
    """Two rows, hand-built logits: row 0 likes k, row 1 likes x (by more than the bonus). After one step
    row 0 is inside "kite" (i boosted), row 1 inside no word (nothing boosted)."""
    guide = WordGuide(WORDS, 2.0)
    log = []
    sample = guide.sampler(recording(log), 2, layout)
    vocab = layout.num_tokens
    logits = np.zeros((2, vocab), np.float32)
    logits[0, ord("k") + layout.offset] = 1.0
    logits[1, ord("x") + layout.offset] = 5.0
    first = sample(mx.array(logits))
    assert [layout.byte(t) for t in first.tolist()] == [ord("k"), ord("x")]
    sample(mx.zeros((2, vocab)))
    want = np.zeros((2, 2, vocab), np.float32)
    want[0, :, [ord(c) + layout.offset for c in "KRkr"]] = 2.0  # step 1: both rows at a word start
    want[1, 0, [ord(c) + layout.offset for c in "Ii"]] = 2.0  # step 2: row 0 after "k", row 1 after "x"
    assert np.array_equal(log[0] - logits, want[0]) and np.array_equal(log[1], want[1])


def tiny(shift_bytes=False):
    mx.random.seed(0)
    vocab = 258 if shift_bytes else 256
    config = ModelConfig(
        num_tokens=vocab, dim=(32, 16), depth=(1, 1), max_seq_len=(8, 8), dim_head=8, heads=2, shift_bytes=shift_bytes
    )
    model = models.build(config)
    model.eval()
    mx.eval(model.parameters())  # (made here: the batcher's thread uses them)
    return model


@pytest.mark.parametrize("temp", [0.0, 0.8])
def test_strength_zero_is_the_plain_sampler_bit_for_bit(temp):
    model = tiny()
    plain = make_sampler(temp, min_p=0.05)
    off = WordGuide(WORDS, 0.0)
    assert off.sampler(plain, 3, TEXT) is plain  # the same function: the same logits, the same draws
    prompt = "Words: kite, river, run\nStory: \n\n"
    want = generate(model, prompt, max_tokens=30, sampler=plain, num_samples=3, seed=4)
    assert generate(model, prompt, max_tokens=30, sampler=plain, num_samples=3, seed=4, guide=off) == want
    assert guide_for_prompt(prompt, 0.0) is None
    on = generate(model, prompt, max_tokens=30, sampler=plain, num_samples=3, seed=4, guide=guide_for_prompt(prompt, 3))
    assert on != want  # (a strength that changes nothing would pass the line above trivially)


@pytest.mark.parametrize("shift_bytes", [False, True])
def test_a_strong_guide_writes_the_words_in_either_layout(shift_bytes):
    """At the strongest setting (100 nats) a random tiny model starts every sample with a word's first
    bytes and spells it on: each of 3 samples begins with a prefix of a form of the words."""
    model = tiny(shift_bytes)
    guide = WordGuide(["ab", "cd"], 100.0)
    texts = generate(model, "", max_tokens=2, sampler=make_sampler(0.8), num_samples=3, seed=1, guide=guide)
    assert all(text.lower() in ("ab", "cd") for text in texts), texts


def test_the_prompt_says_the_words_and_where_the_story_stands():
    guide = guide_for_prompt("Features: Dialogue\nWords: kite, river\nStory: \n\nThe kite ", 2.0)
    assert guide.words == ("kite", "river") and guide.story == b"The kite " and guide.first().used == {0}
    assert guide_for_prompt(b"Once upon a ki", 2.0, ["kite"]).story == b"Once upon a ki"
    assert guide_for_prompt("Once upon a time", 2.0) is None  # no words: nothing to guide


def test_evaluate_instruct_writes_what_generate_writes_with_the_guide():
    model = tiny()
    records = [Record((), ("kite", "run"), "", "", "", "Words: kite, run\nStory: \n\n")]
    guide = lambda record: WordGuide(record.words, 4.0)  # noqa: E731
    result = instruct.evaluate_instruct(model, records, seed=2, max_tokens=20, guide=guide)
    assert result["settings"]["guide_strength"] == 4.0
    want = generate(model, records[0].prompt, max_tokens=20, seed=2, sampler=make_sampler(0.8, min_p=0.05),
                    guide=guide(records[0]))[0]  # fmt: skip
    assert result["stories"][0]["story"] == want.split(chr(EOT))[0]
    assert "guide_strength" not in instruct.evaluate_instruct(model, records, seed=2, max_tokens=4)["settings"]


def test_the_server_guides_a_request_as_generate_does():
    """A guided and an unguided request decoded together by the batcher each get what generate gives."""
    model = tiny()
    config = model.config
    guided, _ = protocol.parse_completion({"prompt": "Once", "words": "kite", "guide_strength": 3, "seed": 5,
                                           "max_tokens": 24, "n": 2}, config, 64, 4)  # fmt: skip
    plain, _ = protocol.parse_completion({"prompt": "Once", "seed": 5, "max_tokens": 24, "n": 2}, config, 64, 4)
    assert guided.guide.words == ("kite",) and plain.guide is None
    batcher = Batcher(lambda: model, max_rows=4).start()
    try:
        for job in (guided, plain):
            batcher.submit(job)
        served = []
        for job in (guided, plain):
            served.append(job_texts(job))
    finally:
        batcher.stop()
    sampler = make_sampler(0.8, min_p=0.05)
    for job, texts in zip((guided, plain), served):
        want = generate(model, job.prompt_text, max_tokens=24, sampler=sampler, num_samples=2, seed=5, guide=job.guide)
        assert texts == want
    assert served[0] != served[1]


@pytest.mark.parametrize(
    "body, default, param, code",
    [
        ({"prompt": "Once", "guide_strength": 2}, 0.0, "guide_strength", "no_words_to_guide"),
        ({"prompt": "Once", "guide_words": "kite"}, 0.0, "guide_words", "invalid_value"),
        ({"prompt": "Once", "guide_words": 3, "guide_strength": 2}, 0.0, "guide_words", "invalid_type"),
        ({"prompt": "Once", "guide_strength": "strong"}, 0.0, "guide_strength", "invalid_type"),
    ],
)
def test_the_api_refuses_guiding_it_cannot_do(body, default, param, code):
    with pytest.raises(protocol.ApiError) as refused:
        protocol.parse_completion(body, tiny().config, 64, 1, default)
    assert (refused.value.status, refused.value.param, refused.value.code) == (400, param, code)


def test_the_server_default_guides_only_requests_with_words():
    config = tiny().config
    job, _ = protocol.parse_completion({"prompt": "Once"}, config, 64, 1, guide_strength=4.0)
    assert job.guide is None  # a plain story: nothing to guide, and no error
    job, _ = protocol.parse_completion({"prompt": "Once", "words": "kite, run"}, config, 64, 1, guide_strength=4.0)
    assert (job.guide.words, job.guide.strength) == (("kite", "run"), 4.0)
    job, _ = protocol.parse_completion(
        {"prompt": "Once", "words": "kite", "guide_strength": 0}, config, 64, 1, guide_strength=4.0
    )
    assert job.guide is None  # the request's own 0 turns it off
    job, _ = protocol.parse_completion({"prompt": "x", "guide_words": ["sun"], "guide_strength": 1}, config, 64, 1)
    assert job.guide.words == ("sun",) and job.guide.story == b"x"
    assert fit_context(encode_prompt("x"), 64)[0] == job.prompt
