"""The built-in story generator: deterministic, varied enough to be worth learning, and its instruct
metadata true of each story."""

import hashlib
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlx_megabyte import stories

ROOT = Path(__file__).resolve().parent.parent
ACCENTED = "".join(sorted({c for name, _ in stories.ACCENTED_NAMES for c in name if ord(c) > 127}))


def digest(docs) -> str:
    return hashlib.sha256("\x00".join(docs).encode()).hexdigest()


@pytest.fixture(scope="module")
def ten_mb():
    return list(stories.documents(seed=0, n_bytes=10_000_000))


@pytest.fixture(scope="module")
def sample():
    rng = random.Random(1)
    return [stories.make_story(rng) for _ in range(3000)]


def test_ten_megabytes_have_no_repeats_and_a_large_vocabulary(ten_mb):
    assert sum(len(d.encode()) for d in ten_mb) >= 10_000_000
    assert len(set(ten_mb)) == len(ten_mb)
    vocabulary = set()
    for doc in ten_mb:
        vocabulary.update(re.findall(r"[a-z]+", doc.lower()))
    assert len(vocabulary) >= 1000


def test_stories_are_story_sized_and_mostly_ascii(ten_mb):
    sizes = sorted(len(d.encode()) for d in ten_mb)
    assert 400 <= sizes[len(sizes) // 2] <= 1200
    assert 300 <= sizes[len(sizes) // 50] and sizes[-len(sizes) // 50] <= 1500
    non_ascii = [d for d in ten_mb if not d.isascii()]
    assert 0.01 <= len(non_ascii) / len(ten_mb) <= 0.10
    # The only non-ASCII characters are the accented letters of a few names.
    assert {c for d in non_ascii for c in d if ord(c) > 127} <= set(ACCENTED)


def test_no_separator_bytes_or_markers(ten_mb):
    records = list(stories.documents(seed=0, n_bytes=2_000_000, instruct=True))
    for doc in ten_mb + records:
        assert "\x00" not in doc and "\x03" not in doc and "<|endoftext|>" not in doc


def test_deterministic_within_and_across_processes():
    docs = list(stories.documents(seed=3, n_bytes=300_000, instruct=True))
    assert list(stories.documents(seed=3, n_bytes=300_000, instruct=True)) == docs
    assert list(stories.documents(seed=4, n_bytes=300_000, instruct=True)) != docs
    code = (
        "import hashlib; from mlx_megabyte import stories; "
        "print(hashlib.sha256('\\x00'.join(stories.documents(3, 300_000, instruct=True)).encode()).hexdigest())"
    )
    # A different hash seed: nothing may depend on set or dict-of-str iteration order.
    for hash_seed in ("1", "2024"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == digest(docs)


def test_documents_stop_once_the_byte_budget_is_met():
    texts = [s.text for s in stories.generate_stories(seed=5, n_bytes=50_000)]
    total = sum(len(t.encode()) for t in texts)
    assert total >= 50_000 and total - len(texts[-1].encode()) < 50_000
    assert list(stories.documents(seed=5, n_bytes=50_000)) == texts


def test_instruct_record_layout(sample):
    for story in sample[:500]:
        record = stories.instruct_record(story)
        head = f"Features: {', '.join(story.features)}\n" if story.features else ""
        assert record == (
            f"{head}Words: {', '.join(story.words)}\nSummary: {story.summary}\n"
            f"Random sentence: {story.random_sentence}\nStory: \n\n{story.text}"
        )
        assert record.startswith("Features: " if story.features else "Words: ")
        lines = record.split("\n")
        keys = [line.split(":")[0] for line in lines[:5] if ":" in line]
        assert keys == (["Features"] if story.features else []) + ["Words", "Summary", "Random sentence", "Story"]
        assert record.endswith("\n\n" + story.text)
    assert any(not s.features for s in sample) and any(s.features for s in sample)


def test_metadata_is_true_of_the_text(sample):
    for story in sample:
        text = story.text
        assert set(story.features) <= set(stories.FEATURES)
        assert list(story.features) == [f for f in stories.FEATURES if f in story.features]
        assert ("Dialogue" in story.features) == ('"' in text)
        assert len(story.words) == 3
        for word in story.words:
            assert re.search(rf"\b{re.escape(word)}\b", text), (word, text)
        assert story.random_sentence in text and story.random_sentence[-1] in ".!?"
        assert "\n" not in story.summary and story.summary.endswith((".", "!"))
        # Every name in the summary is someone in this story.
        names = [w for w in re.findall(r"[^\W\d_a-z]\w*", story.summary) if w not in ("A", "An", "When")]
        assert names and all(re.search(rf"\b{name}\b", text) for name in names), (story.summary, text)


def test_every_feature_occurs_but_none_always(sample):
    for feature in stories.FEATURES:
        share = sum(feature in s.features for s in sample) / len(sample)
        assert 0.05 <= share <= 0.7, (feature, share)


def test_grammar_smoke(sample):
    for story in sample:
        for text in (story.text, story.summary):
            assert not re.search(r"\b[Tt]hey (was|has|is)\b|\b(he|she|it|He|She|It) were\b", text), text
            assert not re.search(r"\b[Aa] (?!uni)[aeiou]", text), text
            assert not re.search(r"\b[Aa]n (?!hon)[b-df-hj-np-tv-z]", text), text
            assert not re.search(r"[.!?] [a-z]|\{|\}|  |\.\.|,,| ,| \.", text), text
            assert text[0].isupper() or text[0] == '"'
