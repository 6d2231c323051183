"""Scoring how a story follows its TinyStories-Instruct prompt: every number here was worked out by hand
from the text in the test, or checked against a plain recomputation."""

import math
import random
from types import SimpleNamespace

import mlx.core as mx
import numpy as np
import pytest
from rich.console import Console

from mlx_megabyte import instruct, models, stories
from mlx_megabyte.generation import generate
from mlx_megabyte.instruct import (
    Record,
    has_dialogue,
    parse_record,
    repeats_prompt,
    sentence_used,
    story_mask,
    uses_word,
    valid_utf8,
    word_forms,
    words_used,
)
from mlx_megabyte.models.megabyte.config import ModelConfig
from mlx_megabyte.sampling import make_sampler
from mlx_megabyte.text import EOT, instruct_text

HUB_RECORD = (
    "Summary: Tim and Sue find a shiny stone by the river.\n"
    "Features: Dialogue, Twist\n"
    "Random sentence: The water was cold.\n"
    "Words: shiny, find, stone\n"
    "Story: \n"
    "\n"
    "Tim and Sue went to the river. The water was cold.\n"
    "\n"
    "\u201cLook!\u201d said Sue. She found a shiny stone."
)


def record(features=(), words=(), summary="", sentence="", story=""):
    return parse_record(instruct_text(list(features), list(words), summary, sentence, story))


# --- words ---


def test_a_story_using_two_of_three_words_one_only_inflected():
    story = "The dogs ran to the park. Mia found a red hat."
    # dog: "dogs" (plural); run: only "ran", irregular, not counted; hat: as written
    assert [uses_word(story, w) for w in ("dog", "run", "hat")] == [True, False, True]
    assert words_used(story, ["dog", "run", "hat"]) == pytest.approx(2 / 3)
    assert words_used(story, []) is None


@pytest.mark.parametrize(
    "word, story",
    [
        ("stop", "The bus stopped."),
        ("run", "Tom was running."),
        ("bake", "Mom was baking."),
        ("bake", "She baked a cake."),
        ("cry", "The baby cried."),
        ("cry", "He cries."),
        ("lie", "The cat was lying down."),
        ("see", "I am seeing stars."),
        ("box", "Two boxes."),
        ("go", "She goes home."),
        ("play", "They played."),
        ("jump", "JUMPING!"),
        ("dog", "The dog's bone."),
        ("ice cream", "Two ice creams."),
    ],
)
def test_simple_inflections_and_any_case_count(word, story):
    assert uses_word(story, word)


@pytest.mark.parametrize(
    "word, story",
    [
        ("dog", "A hotdog."),
        ("dog", "Dogma."),
        ("go", "They went home."),
        ("mouse", "Three mice."),
        ("played", "They play."),
        ("cat", "A catalogue."),
    ],
)
def test_other_words_and_irregular_forms_do_not_count(word, story):
    assert not uses_word(story, word)


def test_word_forms_follow_the_documented_rule():
    assert word_forms("stop") == ("stop", "stoped", "stoping", "stopped", "stopping", "stops")
    assert word_forms("Bake") == ("bake", "baked", "bakeed", "bakeing", "bakes", "baking")
    assert word_forms("cry") == ("cried", "cries", "cry", "cryed", "crying", "crys")
    assert word_forms("see") == ("see", "seed", "seeed", "seeing", "sees")  # "seed": a plain -d after e
    assert word_forms("rain") == ("rain", "rained", "raining", "rains")  # two vowels: nothing doubled
    assert word_forms("snow") == ("snow", "snowed", "snowing", "snows")  # w is never doubled


# --- features ---


def test_dialogue_in_curly_or_straight_quotes():
    assert has_dialogue("\u201cLook at me!\u201d said Mia.")
    assert has_dialogue('Tom said, "Hi."')
    assert has_dialogue("The end.\n\n\u201cCome back,\u201d she said.")


def test_apostrophes_single_quotes_and_stray_quotes_are_no_dialogue():
    assert not has_dialogue("Lily's hat and Tom's kite were in Max's room. They didn't mind.")
    assert not has_dialogue("'Hello,' said Tom.")  # single quotes are not counted (apostrophes)
    assert not has_dialogue('He said "hi\n\nthere" later.')  # quotes in two paragraphs do not pair
    assert not has_dialogue('She wrote "..." on the wall and "1, 2" below.')  # no letter inside
    assert not has_dialogue('Tom ate the "')


def test_the_random_sentence_counts_verbatim_up_to_case_and_whitespace():
    story = "Once upon a time.\nThe  water was\ncold. The end."
    assert sentence_used(story, "the water was cold.")
    assert not sentence_used(story, "The water was warm.")
    assert sentence_used(story, "  ") is None


def test_repeating_the_prompt():
    r = record(["Dialogue"], ["dog"], "Mia finds a dog. She is happy.", "Mia ran.")
    assert repeats_prompt("Once upon a time.\nWords: dog, cat\nMia ran.", r)  # a label line
    assert repeats_prompt("Mia ran.\n  story: again", r)  # labels in any case, indented
    assert repeats_prompt("Then: mia finds a dog.\nShe is   happy. The end.", r)  # the whole summary
    assert not repeats_prompt("Mia ran. Mia finds a dog. The end.", r)  # one sentence of it is not
    assert not repeats_prompt("Mia ran. Her words: dog.", r)  # a label inside a line is not a field
    assert not repeats_prompt("Mia ran.", record(summary=""))


def test_valid_utf8_allows_only_a_cut_tail():
    assert valid_utf8("café".encode())
    assert not valid_utf8(b"caf\xff")
    assert not valid_utf8(b"caf\xc3")  # an ended story must end on a whole character
    assert valid_utf8(b"caf\xc3", ended=False)  # cut by the length budget inside "é"
    assert not valid_utf8(b"\xc3caf", ended=False)


def test_score_story_by_hand():
    r = parse_record(HUB_RECORD)
    story = "The river was shiny. \u201cI find stones!\u201d said Tim. The water was cold."
    assert instruct.score_story(r, story.encode(), True) == {
        "words_used": 1.0,
        "missing_words": [],
        "dialogue_asked": True,
        "dialogue": True,
        "sentence_used": True,
        "ended": True,
        "valid_utf8": True,
        "prompt_repeated": False,
        "story_bytes": len(story) + 4,  # 2 curly quotes
    }
    assert instruct.score_story(r, b"Tim went home. Story: again", False) == {
        "words_used": 0.0,
        "missing_words": ["shiny", "find", "stone"],
        "dialogue_asked": True,
        "dialogue": False,
        "sentence_used": False,
        "ended": False,
        "valid_utf8": True,
        "prompt_repeated": False,
        "story_bytes": 27,
    }


# --- records ---


def test_a_hub_layout_record_in_another_order():
    r = parse_record(HUB_RECORD)
    assert r.features == ("Dialogue", "Twist")
    assert r.words == ("shiny", "find", "stone")
    assert r.summary == "Tim and Sue find a shiny stone by the river."
    assert r.random_sentence == "The water was cold."
    assert r.story.startswith("Tim and Sue went") and r.story.endswith("shiny stone.")
    assert r.prompt.endswith("Story: \n\n") and r.text == HUB_RECORD


def test_continued_lines_missing_fields_and_non_records():
    r = parse_record("summary: Tom is sad.\nHe finds his ball.\nStory: Once upon a time.")
    assert (r.summary, r.features, r.words, r.random_sentence) == ("Tom is sad. He finds his ball.", (), (), "")
    assert r.story == "Once upon a time."
    with pytest.raises(ValueError, match="no line starting with 'Story:'"):
        parse_record("Words: a, b\nOnce upon a time.")
    with pytest.raises(ValueError, match="comes before any field"):
        parse_record("Hello there\nWords: a\nStory: x")


def test_the_builtin_corpus_parses_back_and_its_stories_pass_every_check():
    rng = random.Random(7)
    for story in (stories.make_story(rng) for _ in range(300)):
        r = parse_record(stories.instruct_record(story))
        assert (r.features, r.words, r.summary, r.random_sentence, r.story) == (
            story.features,
            story.words,
            story.summary,
            story.random_sentence,
            story.text,
        )
        score = instruct.score_story(r, story.text.encode(), True)
        assert score["words_used"] == 1.0 and score["sentence_used"] and not score["prompt_repeated"]
        assert score["dialogue"] == ("Dialogue" in story.features)


def test_records_from_an_encoded_split():
    docs = [
        instruct_text(["Dialogue"], ["a"], "S.", "", "One."),
        "A plain story.",
        instruct_text("", ["b"], story="Two."),
    ]
    stream = b"".join(d.encode() + bytes([EOT]) for d in docs)
    got = instruct.records_from_stream(np.frombuffer(stream, np.uint8))
    assert [(r.words, r.story) for r in got] == [(("a",), "One."), (("b",), "Two.")]
    assert len(instruct.records_from_stream(stream, limit=1)) == 1


def test_story_mask_marks_each_story_and_its_end_of_text_byte():
    first, plain, third = b"Words: a\nStory: Hi", b"No story here", b"Story:\n\nYo. Story: x"
    stream = first + b"\x03" + plain + b"\x03" + third + b"\x03"
    mask = story_mask(stream)
    expected = np.zeros(len(stream), dtype=bool)
    expected[16:19] = True  # "Hi" and its EOT
    start = len(first) + 1 + len(plain) + 1 + len("Story:\n\n")
    expected[start:] = True  # "Yo. Story: x" (a label inside a story is story) and its EOT
    assert mask.tolist() == expected.tolist()
    assert not story_mask(b"Words: Story: no\x03").any()  # a label must start a line
    assert story_mask(b"Story: open").tolist() == [False] * 7 + [True] * 4  # no EOT yet: to the end


@pytest.mark.parametrize("text", [HUB_RECORD, HUB_RECORD.replace("\n", "\r\n")])
def test_the_mask_marks_what_parse_record_calls_the_story(text):
    r = parse_record(text)
    ids = bytes([EOT]) + text.encode() + bytes([EOT])
    mask = story_mask(ids)
    assert bytes(np.frombuffer(ids, np.uint8)[mask]) == r.story.encode() + bytes([EOT])


# --- the model ---


def tiny_megabyte(context_patches=8):
    """A small random MEGABYTE with a 64-byte context, so a record takes several windows."""
    mx.random.seed(0)
    model = models.build(
        ModelConfig(num_tokens=256, dim=(32, 16), depth=(1, 1), max_seq_len=(context_patches, 8), dim_head=8, heads=2)
    )
    model.eval()
    return model


def naive_story_loss(model, ids: np.ndarray, mask: np.ndarray) -> float:
    """The summed story loss by a plain loop: each counted byte from its own forward pass over the bytes
    it may see (its window: the first context, then windows ending half a context apart)."""
    context, stride, total = model.config.context_length, model.config.context_length // 2, 0.0
    for p in np.flatnonzero(mask):
        end = context if p < context else min(context + ((p - context) // stride + 1) * stride, len(ids))
        begin = max(end - context, 0)
        logits = np.array(
            model(mx.array(ids[begin : p + 1][None].astype(np.int32)), include_start=True)[0, p - begin],
            dtype=np.float64,
        )
        top = logits.max()
        total += top + math.log(np.exp(logits - top).sum()) - logits[ids[p]]
    return total


def test_story_bits_per_byte_equals_a_plain_recount():
    model = tiny_megabyte()
    short = record(["Dialogue"], ["hat"], "Mia has a hat.", "", "Mia had a red hat. \u201cHi!\u201d she said.")
    long = record([], ["dog"], "A dog runs.", "", "The dog ran and ran across the field, then it sat down. " * 3)
    total, counted = 0.0, 0
    for r in (short, long):
        ids = np.frombuffer(bytes([EOT]) + r.text.encode() + bytes([EOT]), np.uint8)
        mask = story_mask(ids)
        assert mask.sum() == len(r.story.encode()) + 1 and mask[-1] and not mask[: len(r.prompt.encode()) + 1].any()
        loss, n = instruct.summed_story_loss(model, ids, mask)
        assert loss == pytest.approx(naive_story_loss(model, ids, mask), rel=1e-5)
        total, counted = total + loss, counted + n
    assert len(long.text.encode()) > 3 * model.config.context_length  # several windows
    result = instruct.story_bits_per_byte(model, [short, long])
    assert result["story_bytes_counted"] == counted
    assert result["story_bpb"] == pytest.approx(total / counted / math.log(2))


def test_first_uses_are_each_words_first_whole_word_in_any_form_and_case():
    story = "Kites flew. The kite fell, and a red KITE-string. Red cats ran; the runner ran."
    # kite: "Kites" at 0; red: "red" at 33 (not inside "Kites"); run: "runner" is no form of run, none
    assert instruct.first_uses(story, ("red", "kite", "run")) == [(0, 5), (33, 36)]
    assert instruct.first_uses("Zoë ate a pear.", ("pear", "ate")) == [(4, 7), (10, 14)]  # characters, not bytes
    assert instruct.first_uses("nothing here", ()) == []


def test_with_words_changes_the_words_line_only():
    r = record(["Dialogue"], ["hat", "run"], "Mia has a hat.", "", "Mia had a hat.")
    other = instruct.with_words(r, ("cup", "sing"))
    assert other.prompt == r.prompt.replace("Words: hat, run", "Words: cup, sing") and other.prompt != r.prompt
    assert (other.story, other.summary, other.features, other.words) == (
        r.story,
        r.summary,
        r.features,
        ("cup", "sing"),
    )
    with pytest.raises(ValueError, match="no Words line"):
        instruct.with_words(record(["Dialogue"], [], "", "", "story"), ("cup",))


def test_word_copy_bits_equal_a_plain_recount_of_the_first_uses_both_ways():
    """Each record's first uses scored given its own Words line and given the next record's words, by
    hand-placed masks and the plain per-byte recount; a model that sees only the current byte (uniform
    here) gains exactly nothing."""
    model = tiny_megabyte()
    records = [
        record([], ["hat", "red"], "Mia has a hat.", "", "Mia had a red hat. She liked the hat."),
        record([], ["dog"], "A dog runs.", "", "The dogs ran and ran across the field, then sat down. " * 2),
        record([], ["cup", "zzz"], "Tom has a cup.", "", "Tom drank from his cup."),
    ]
    spans = [[(10, 13), (14, 17)], [(4, 8)], [(19, 22)]]  # red, hat; dogs; cup (zzz is never used)
    differences, own, other, counted = [], 0.0, 0.0, 0
    for r, hand, next_words in zip(records, spans, [("dog",), ("cup", "zzz"), ("hat", "red")]):
        assert instruct.first_uses(r.story, r.words) == hand
        sums = []
        for asked in (r, instruct.with_words(r, next_words)):
            ids = np.frombuffer(bytes([EOT]) + asked.text.encode() + bytes([EOT]), np.uint8)
            mask = np.zeros(len(ids), bool)
            for start, end in hand:
                mask[1 + len(asked.prompt.encode()) + start : 1 + len(asked.prompt.encode()) + end] = True
            sums.append(naive_story_loss(model, ids, mask))
        n = sum(end - start for start, end in hand)
        own, other, counted = own + sums[0], other + sums[1], counted + n
        differences.append((sums[1] - sums[0]) / n / math.log(2))
    result = instruct.word_copy_bits(model, records)
    assert result["words_copy_records"] == 3
    assert result["words_bits_given_words"] == pytest.approx(own / counted / math.log(2), rel=1e-5)
    assert result["words_bits_given_other_words"] == pytest.approx(other / counted / math.log(2), rel=1e-5)
    assert result["words_copy_bits"] == pytest.approx(sum(differences) / 3, abs=1e-5)
    mean = sum(differences) / 3
    error = math.sqrt(sum((d - mean) ** 2 for d in differences) / 2 / 3)
    assert result["words_copy_bits_error"] == pytest.approx(error, rel=1e-4, abs=1e-6)
    flat = instruct.word_copy_bits(Scripted(b""), records)
    assert flat["words_copy_bits"] == 0 and flat["words_bits_given_words"] == pytest.approx(8.0)


def test_name_spans_are_capitalised_words_used_twice_once_inside_a_sentence_never_lower_case():
    story = 'Once Mia saw Tom. Then Tom ran to Mia, and "Mia!" he said. Sunny was sunny. Ann met Zoë, and Zoë ran.'
    # Once, Then: only where sentences start; Sunny: also in lower case; Ann: once; Zoë: a name in any script
    assert instruct.name_spans(story) == [[(5, 8), (34, 37), (44, 47)], [(13, 16), (23, 26)], [(84, 87), (93, 96)]]
    assert instruct.name_spans("Mia ran. Mia sat.") == []  # never inside a sentence: nothing says it is a name


def test_name_copy_bits_equal_a_plain_recount_of_first_and_later_uses():
    """Each story's names scored after their first letter, first use against later ones, by hand-placed
    masks and the plain per-byte recount; a uniform model (8 bits a byte) saves exactly nothing."""
    model = tiny_megabyte()
    stories = [
        "Mia saw Tom. Then Tom ran to Mia, and Mia sat.",
        "The fox ran far away from the hill, and then Zoë sat down by Zoë's den. " * 2,
        "no names here at all",
        "Bo met Bo.",
    ]
    # the stories' byte spans after each use's first letter: Mia, Tom; Zoë four times (ë is 2 bytes); Bo
    first_uses = [[(1, 3), (9, 11)], [(46, 49)], [], [(1, 2)]]
    later_uses = [[(30, 32), (39, 41), (19, 21)], [(63, 66), (120, 123), (137, 140)], [], [(8, 9)]]
    differences, first_total, later_total, n_first, n_later = [], 0.0, 0.0, 0, 0
    for story, first, later in zip(stories, first_uses, later_uses):
        if not first:
            assert instruct.name_spans(story) == []
            continue
        ids = np.frombuffer(bytes([EOT]) + story.encode() + bytes([EOT]), np.uint8)
        sums, counts = [], []
        for spans in (first, later):
            mask = np.zeros(len(ids), bool)
            for start, end in spans:
                mask[1 + start : 1 + end] = True
            assert ids[mask].tobytes() != b"" and all(b != ord(" ") for b in ids[mask])
            sums.append(naive_story_loss(model, ids, mask))
            counts.append(int(mask.sum()))
        first_total, later_total = first_total + sums[0], later_total + sums[1]
        n_first, n_later = n_first + counts[0], n_later + counts[1]
        differences.append((sums[0] / counts[0] - sums[1] / counts[1]) / math.log(2))
    assert len(stories[1].encode()) > 2 * model.config.context_length  # several windows
    result = instruct.name_copy_bits(model, stories)
    assert result["names_copy_stories"] == 3
    assert result["names_bits_first_use"] == pytest.approx(first_total / n_first / math.log(2), rel=1e-5)
    assert result["names_bits_later_uses"] == pytest.approx(later_total / n_later / math.log(2), rel=1e-5)
    mean = sum(differences) / 3
    assert result["names_copy_bits"] == pytest.approx(mean, abs=1e-5)
    error = math.sqrt(sum((d - mean) ** 2 for d in differences) / 2 / 3)
    assert result["names_copy_bits_error"] == pytest.approx(error, rel=1e-4, abs=1e-6)
    flat = instruct.name_copy_bits(Scripted(b""), stories)
    assert flat["names_copy_bits"] == 0 and flat["names_bits_later_uses"] == pytest.approx(8.0)
    assert instruct.name_copy_bits(model, stories[2:3])["names_copy_bits"] is None


class Scripted:
    """A model that writes `script` and then the end-of-text byte whatever its prompt, and whose forward
    pass is uniform over 256 bytes (8 bits per byte): the driver's numbers can be worked out by hand."""

    def __init__(self, script: bytes):
        self.script = script
        self.config = SimpleNamespace(context_length=4096)

    def __call__(self, ids, include_start=False):
        return mx.zeros((ids.shape[0], ids.shape[1] + include_start, 256))

    def make_cache(self, batch_size=1):
        model = self

        class Cache:
            def prefill(self, ids):
                self.at = 0
                return self.logits()

            def step(self, y):
                self.at += 1
                return self.logits()

            def logits(self):
                byte = model.script[self.at] if self.at < len(model.script) else EOT
                return mx.broadcast_to(mx.where(mx.arange(256) == byte, 100.0, 0.0), (batch_size, 256))

        return Cache()


SCRIPT = "Mia said, \u201cLook at the dogs!\u201d They were running. The end."  # 61 bytes: 55 ASCII, 2 x 3
SCRIPT_RECORDS = [
    record(["Dialogue"], ["dog", "run", "hat"], "Mia sees dogs.", "They were running.", "x"),  # words 2/3
    record([], ["look", "end", "cat"], "Mia looks.", "The end.", "yz"),  # words 2/3, dialogue not asked
    record(["Dialogue", "BadEnding"], ["say"], "They were running.", "", ""),  # "said" irregular: 0/1; repeated
]


def test_the_driver_by_hand_with_a_scripted_model():
    result = instruct.evaluate_instruct(Scripted(SCRIPT.encode()), SCRIPT_RECORDS, seed=5)
    assert len(SCRIPT.encode()) == 61
    # the records' own stories ("x", "yz", "") use none of their words and no names: nothing to score
    copy = {key: result["aggregate"].pop(key) for key in list(result["aggregate"]) if "_copy_" in key}
    assert copy == {
        "words_copy_bits": None,
        "words_copy_bits_error": None,
        "words_copy_records": 0,
        "names_copy_bits": None,
        "names_copy_bits_error": None,
        "names_copy_stories": 0,
    }
    assert result["aggregate"] == pytest.approx(
        {
            "prompts": 3,
            "words_used": 4 / 9,
            "all_words_used": 0.0,
            "prompts_with_words": 3,
            "dialogue_when_asked": 1.0,
            "prompts_asking_dialogue": 2,
            "dialogue_when_not_asked": 1.0,
            "prompts_not_asking_dialogue": 1,
            "sentence_used": 1.0,
            "prompts_with_sentence": 2,
            "stories_ended": 1.0,
            "valid_utf8": 1.0,
            "prompt_repeated": 1 / 3,
            "mean_story_bytes": 61.0,
            "story_loss": math.log(256),
            "story_bpb": 8.0,
            "story_bytes_counted": (1 + 1) + (2 + 1) + (0 + 1),
        }
    )
    assert [s["seed"] for s in result["stories"]] == [5, 6, 7]
    assert [s["missing_words"] for s in result["stories"]] == [["hat"], ["cat"], ["say"]]
    assert result["stories"][0]["story"] == SCRIPT and result["stories"][0]["prompt"] == SCRIPT_RECORDS[0].prompt
    assert result["settings"] == {
        "seed": 5,
        "max_tokens": instruct.DEFAULT_STORY_BYTES,
        "temp": 0.8,
        "top_p": 1.0,
        "min_p": 0.05,
        "top_k": 0,
    }


def test_the_driver_cuts_stories_at_the_budget():
    cut = instruct.evaluate_instruct(Scripted(SCRIPT.encode()), SCRIPT_RECORDS[:1], max_tokens=12)
    story = cut["stories"][0]
    # 12 bytes: "Mia said, " and two of the three bytes of the opening quote: cut, so still valid UTF-8
    assert (story["story_bytes"], story["ended"], story["valid_utf8"], story["dialogue"]) == (12, False, True, False)
    broken = instruct.evaluate_instruct(Scripted(b"Mia \xff ran."), SCRIPT_RECORDS[:1])["aggregate"]
    # "Mia " + 0xff + " ran.": 10 bytes, not UTF-8
    assert (broken["valid_utf8"], broken["stories_ended"], broken["mean_story_bytes"]) == (0.0, 1.0, 10.0)


@pytest.mark.parametrize("architecture", list(models.ARCHITECTURES))
def test_the_driver_is_reproducible_for_every_architecture(architecture):
    mx.random.seed(0)
    model = models.build(models.ARCHITECTURES[architecture].presets["tiny"])
    model.eval()
    rng = random.Random(11)
    records = [parse_record(stories.instruct_record(stories.make_story(rng))) for _ in range(2)]
    first = instruct.evaluate_instruct(model, records, seed=3, max_tokens=24)
    again = instruct.evaluate_instruct(model, records, seed=3, max_tokens=24)
    assert first == again
    assert first["aggregate"]["story_bytes_counted"] == sum(len(r.story.encode()) + 1 for r in records)
    # each story is the one generate writes with its seed
    sampler = make_sampler(0.8, min_p=0.05)
    for i, (r, story) in enumerate(zip(records, first["stories"])):
        assert story["story"] == generate(model, r.prompt, max_tokens=24, sampler=sampler, seed=3 + i)[0]


def test_the_comparison_table_and_its_json():
    base = instruct.evaluate_instruct(Scripted(b"The sun sat."), SCRIPT_RECORDS)
    tuned = instruct.evaluate_instruct(Scripted(SCRIPT.encode()), SCRIPT_RECORDS)
    console = Console(record=True, width=120)
    console.print(instruct.comparison_table({"base": base, "tuned": tuned}))
    lines = {
        line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
        for line in console.export_text().splitlines()
        if line.count("│") == 4
    }
    assert lines["words used"] == ["0.0% of 3", "44.4% of 3"]  # base: no word; tuned: (2/3 + 2/3 + 0) / 3
    # per prompt the tuned model uses 2/3, 2/3, 0 more: mean 4/9; deviations 2/9, 2/9, -4/9 give a sample
    # variance of (4 + 4 + 16) / 81 / 2 = 12/81, a standard error of sqrt(12/81 / 3) = 2/9
    assert lines["more than base, per prompt"] == ["", "+44.4 ± 22.2 points"]
    assert lines["dialogue when asked"] == ["0.0% of 2", "100.0% of 2"]
    assert lines["prompt repeated"] == ["0.0%", "33.3%"]
    assert lines["mean story bytes"] == ["12", "61"]
    assert lines["story bits per byte"] == ["8.0000", "8.0000"]
    assert lines["prompts"] == ["3", "3"]
    data = instruct.comparison_json({"base": base, "tuned": tuned})
    assert list(data["models"]) == ["base", "tuned"]
    assert data["models"]["tuned"]["aggregate"]["words_used"] == pytest.approx(4 / 9)
    assert "stories" not in data["models"]["tuned"]
    assert data["models"]["tuned"]["words_gain"] == pytest.approx(
        {"gain": 4 / 9, "standard_error": 2 / 9, "prompts": 3}
    )
    assert "words_gain" not in data["models"]["base"]


def test_words_gain_pairs_stories_by_prompt():
    def stories(*shares):
        return [{"prompt": f"p{i}", "words_used": share} for i, share in enumerate(shares)]

    # differences 0.5, 0.5, 0.5: no spread, so no standard error; the prompt without words is left out
    gain = instruct.words_gain(stories(0, 0.5, 0, None), stories(0.5, 1, 0.5, None))
    assert gain == pytest.approx({"gain": 0.5, "standard_error": 0.0, "prompts": 3})
    assert instruct.words_gain(stories(0, 1), stories(1, 0)) == pytest.approx(
        {"gain": 0.0, "standard_error": 1.0, "prompts": 2}  # differences 1, -1: variance 2, sqrt(2 / 2)
    )
    assert instruct.words_gain(stories(0, 1), stories(1)) is None  # other prompts
    assert instruct.words_gain(stories(0, None), stories(1, None)) is None  # one prompt with words


def test_a_record_with_nothing_checkable_scores_none():
    result = instruct.aggregate([instruct.score_story(Record((), (), "", "", "", "Story: "), b"Hi.", True)])
    assert result["words_used"] is None and result["sentence_used"] is None and result["dialogue_when_asked"] is None
    assert result["dialogue_when_not_asked"] == 0.0 and result["prompts_not_asking_dialogue"] == 1


# --- python -m mlx_megabyte.evaluate --instruct ------------------------------------------------------------


def test_evaluate_instruct_compares_models_on_the_same_prompts(tmp_path):
    """Two models of different architectures, one named: the table names both and what trained them, and
    the JSON holds for each the stories generate writes with seed + i and the scores of those stories."""
    import json

    from mlx_megabyte import load, save
    from mlx_megabyte.data import MARKER

    from .helpers import run

    rng = random.Random(5)
    records = [parse_record(stories.instruct_record(stories.make_story(rng))) for _ in range(3)]
    (tmp_path / "records.txt").write_text(f"\n{MARKER}\n".join(r.text for r in records))
    paths = {}
    for i, arch in enumerate(["megabyte", "spacebyte"]):
        mx.random.seed(i)
        paths[arch] = tmp_path / arch
        save(models.build(models.ARCHITECTURES[arch].presets["tiny"]), paths[arch])
    (paths["megabyte"] / "trainer_state.json").write_text(json.dumps({"data": "builtin", "instruct": False}))
    result = run(
        "-m",
        "mlx_megabyte.evaluate",
        "--instruct",
        "--model",
        f"base={paths['megabyte']}",
        "--model",
        str(paths["spacebyte"]),
        "--data",
        str(tmp_path / "records.txt"),
        "--prompts",
        "3",
        "--max-tokens",
        "30",
        "--seed",
        "5",
        "--temp",
        "1.0",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path / "out.json"),
        env={"COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    assert "Stories on command: 3 prompts" in result.stderr and "base" in result.stderr
    assert "tuned on instruct data" in result.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    assert list(report["models"]) == ["base", str(paths["spacebyte"])]
    assert report["models"]["base"]["model"]["instruct_tuned"] is False
    assert report["models"][str(paths["spacebyte"])]["model"]["instruct_tuned"] is None  # nothing records it
    sampler = make_sampler(1.0, min_p=0.05)
    for name, arch in (("base", "megabyte"), (str(paths["spacebyte"]), "spacebyte")):
        model = load(paths[arch])
        written = report["stories"][name]
        assert [s["prompt"] for s in written] == [r.prompt for r in records]
        for i, (record, story) in enumerate(zip(records, written)):
            assert story["seed"] == 5 + i
            assert story["story"] == generate(model, record.prompt, max_tokens=30, sampler=sampler, seed=5 + i)[0]
        assert report["models"][name]["aggregate"]["prompts"] == 3
        assert report["models"][name]["aggregate"]["words_used"] == pytest.approx(
            np.mean([s["words_used"] for s in written])
        )


def test_evaluate_instruct_refusals_are_one_line(tmp_path):
    from mlx_megabyte import save

    from .helpers import one_line_error, run

    save(models.build(models.ARCHITECTURES["megabyte"].presets["tiny"]), tmp_path / "m")
    (tmp_path / "plain.txt").write_text("Once upon a time there was a cat.")
    common = ["-m", "mlx_megabyte.evaluate", "--cache-dir", str(tmp_path / "cache")]
    one_line_error(
        run(*common, "--model", str(tmp_path / "m"), "--data", "builtin", "--seed", "3"), "--seed is for --instruct"
    )
    one_line_error(
        run(*common, "--model", str(tmp_path / "m"), "--model", str(tmp_path / "m"), "--data", "builtin"),
        "give one --model",
    )
    one_line_error(
        run(*common, "--instruct", "--model", f"a={tmp_path / 'm'}", "--model", f"a={tmp_path / 'm'}"),
        "the name 'a' is given twice",
    )
    one_line_error(
        run(*common, "--instruct", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "plain.txt")),
        "holds no instruct records",
    )
    one_line_error(run(*common, "--instruct", "--model", f"a={tmp_path / 'nothing'}"), "no weights directory")


def test_byte_span_counts_utf8_bytes_before_and_inside_the_span():
    # "é" is two bytes and "🐉" four: hand-counted offsets into the encoded text
    text = "café 🐉 tea"
    assert instruct.byte_span(text, 0, 4) == (0, 5)
    assert instruct.byte_span(text, 5, 6) == (6, 10)
    assert instruct.byte_span(text, 7, 10) == (11, 14)
    assert text.encode()[11:14] == b"tea"
    # an undecodable byte kept through surrogateescape counts as the one byte it was
    raw = b"\xff ab".decode("utf-8", "surrogateescape")
    assert instruct.byte_span(raw, 2, 4) == (2, 4)
