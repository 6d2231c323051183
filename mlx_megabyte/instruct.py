"""How well a story model follows TinyStories-Instruct prompts, with checks anyone can redo by hand.

A record (text.instruct_text writes one) is a few "Name: value" lines, then "Story:" and the story:

    Features: Dialogue
    Words: hat, run, red
    Summary: Mia loses her red hat and her friend helps her find it.
    Random sentence: The wind was cold.
    Story:

    Once upon a time, ...

`parse_record` reads it back, in either layout: the built-in corpus's (that order, every field but Story
optional) or TinyStoriesInstruct's on the hub (the same labels in any order). What a story is scored on:

- **Words** (`words_used`): the share of required words the story uses, as whole words, ignoring case,
  in the word's own form or a simple inflection (`word_forms`). Irregular forms (run -> ran) do not count.
- **Dialogue** (`has_dialogue`): double quotes, straight or curly, around words in one paragraph.
- **Random sentence** (`sentence_used`): the record asks for one sentence of the story; it counts when the
  story holds it verbatim, ignoring case and runs of whitespace.
- **The story itself**: it ends (the end-of-text byte within the length budget), is valid UTF-8
  (`valid_utf8`), and does not repeat its prompt (`repeats_prompt`).

Not scored: BadEnding, Twist, Foreshadowing and Conflict are about what happens, not how it is written;
cue words agree poorly with the built-in corpus's own labels (on 3,000 of its stories "sad", "cried" or
"never" in the last paragraph finds 288 of 507 bad endings and flags 818 good ones; "suddenly", "but then"
or "surprise" finds 176 of 429 twists and flags 650 others). MoralValue's cue phrases ("learned that",
"lesson", ...) do match the built-in labels (1,190 of 1,190, 4 false alarms), but only because its morals
come from a few templates: TinyStoriesInstruct's morals are free prose, so the same list would measure the
template, not the feature.

The bits per byte of the stories given their prompts (`story_bits_per_byte`) count the bytes `story_mask`
marks: the story and the end-of-text byte that closes it (a model is asked to end its story too), never
the prompt. Training with a masked prompt uses the same mask.
"""

from __future__ import annotations

import codecs
import math
import re
import statistics
from contextlib import closing
from dataclasses import dataclass

import mlx.core as mx
import numpy as np
from rich.table import Table

from .generation import fit_context, generate_step, keyed_sampler
from .kernels import cross_entropy
from .sampling import (
    DEFAULT_MIN_P,
    DEFAULT_TEMP,
    DEFAULT_TOP_K,
    DEFAULT_TOP_P,
    make_sampler,
)
from .text import EOT, byte_array, encode_prompt, story_mask
from .tokens import TEXT

DEFAULT_SEED = 0
DEFAULT_STORY_BYTES = 2048  # the length budget: the built-in stories are at most about 1,400 bytes
FIELDS = {"features": "Features", "words": "Words", "summary": "Summary", "random_sentence": "Random sentence"}
_FIELD_LINE = re.compile(r"(Features|Words|Summary|Random sentence):[ \t]*(.*)", re.IGNORECASE)
# "Story:" at the start of a line and the whitespace after it (text.story_mask finds the same label in a
# stream of records: parse_record's story is what story_mask marks).
_STORY_LABEL = re.compile(r"^Story:[ \t\r\n]*", re.MULTILINE)
_LABEL_IN_STORY = re.compile(r"^[ \t]*(?:Features|Words|Summary|Random sentence|Story):", re.MULTILINE | re.IGNORECASE)
_LETTER = r"[^\W\d_]"  # a letter in any script
_VOWELS = "aeiou"


# --- records ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One TinyStories-Instruct record: its fields, its story, and its text up to the story as written
    (`prompt`, ending after "Story:" and the whitespace after it), which is what a model is given."""

    features: tuple[str, ...]
    words: tuple[str, ...]
    summary: str
    random_sentence: str
    story: str
    prompt: str

    @property
    def text(self) -> str:
        return self.prompt + self.story


def parse_record(text: str) -> Record:
    """The fields of a record (the inverse of text.instruct_text, in any field order).

    >>> r = parse_record("Words: hat, run\\nFeatures: Dialogue\\nStory: \\n\\nOnce upon a time.")
    >>> r.words, r.features, r.summary, r.story
    (('hat', 'run'), ('Dialogue',), '', 'Once upon a time.')

    A line that is no field continues the field above it; a record needs a "Story:" line (ValueError).
    """
    story = _STORY_LABEL.search(text)
    if story is None:
        raise ValueError("not a TinyStories-Instruct record: it has no line starting with 'Story:'")
    values: dict[str, str] = {}
    name = None
    for line in text[: story.start()].splitlines():
        match = _FIELD_LINE.fullmatch(line.strip())
        if match:
            name = next(key for key, label in FIELDS.items() if label.lower() == match[1].lower())
            values[name] = match[2].strip()
        elif line.strip():
            if name is None:
                raise ValueError(f"not a TinyStories-Instruct record: {line.strip()[:40]!r} comes before any field")
            values[name] = f"{values[name]} {line.strip()}".strip()
    listed = {
        key: tuple(w.strip() for w in values.get(key, "").split(",") if w.strip()) for key in ("features", "words")
    }
    return Record(
        features=listed["features"],
        words=listed["words"],
        summary=values.get("summary", ""),
        random_sentence=values.get("random_sentence", ""),
        story=text[story.end() :],
        prompt=text[: story.end()],
    )


def records_from_stream(data, limit: int | None = None) -> list[Record]:
    """The records in an encoded split (documents separated by the end-of-text byte, as data.prepare
    writes them), in order; documents that are not records (plain stories) are skipped."""
    records = []
    for document in byte_array(data).tobytes().split(bytes([EOT])):
        try:
            records.append(parse_record(document.decode("utf-8", "surrogateescape")))
        except ValueError:
            continue
        if limit is not None and len(records) == limit:
            break
    return records


# --- the checks ------------------------------------------------------------------------------------------


def word_forms(word: str) -> tuple[str, ...]:
    """The forms of a required word that count as using it (lower case, sorted): the word itself, and
    -s, -es, -ed and -ing as a simple rule writes them, not a dictionary:

    - -s always; -es after s, x, z, ch, sh or o (box -> boxes, go -> goes);
    - a consonant and y: -ies and -ied (cry -> cries, cried);
    - a final e: -d, and -ing without the e (bake -> baked, baking), but ie -> -ying (lie -> lying) and
      ee keeps it (see -> seeing);
    - a single vowel and a final consonant other than w, x, y: also the consonant doubled (stop ->
      stopped, run -> running).

    Plain suffixes always count too, so the rule may accept a form English does not have (bake ->
    bakeed), which no story holds, and rarely another word (hop -> hoping). Irregular forms (run -> ran,
    mouse -> mice) do not count, nor does a base form when the required word is inflected.

    >>> word_forms("stop")
    ('stop', 'stoped', 'stoping', 'stopped', 'stopping', 'stops')
    """
    w = word.strip().lower()
    if not w or not w[-1].isalpha():
        return (w,) if w else ()
    forms = {w, w + "s", w + "ed", w + "ing"}
    if w.endswith(("s", "x", "z", "ch", "sh", "o")):
        forms.add(w + "es")
    if len(w) > 1 and w[-1] == "y" and w[-2] not in _VOWELS:
        forms |= {w[:-1] + "ies", w[:-1] + "ied"}
    if w.endswith("e"):
        forms.add(w + "d")
        if w.endswith("ie"):
            forms.add(w[:-2] + "ying")
        elif not w.endswith("ee"):
            forms.add(w[:-1] + "ing")
    single_vowel = len(w) >= 2 and w[-2] in _VOWELS and (len(w) == 2 or w[-3] not in _VOWELS)
    if single_vowel and w[-1] not in _VOWELS + "wxy":
        forms |= {w + w[-1] + "ed", w + w[-1] + "ing"}
    return tuple(sorted(forms))


def is_letter(char: str) -> bool:
    """Whether a character is a letter, in any script: a whole word (`uses_word`) is bounded by others."""
    return re.fullmatch(_LETTER, char) is not None


def uses_word(story: str, word: str) -> bool:
    """Whether `story` holds one of `word_forms(word)` as a whole word, ignoring case: "dogs" uses dog,
    "dog's" too (an apostrophe ends a word), "hotdog" does not."""
    forms = word_forms(word)
    if not forms:
        return False
    pattern = f"(?<!{_LETTER})(?:{'|'.join(map(re.escape, forms))})(?!{_LETTER})"
    return re.search(pattern, story, re.IGNORECASE) is not None


def words_used(story: str, words) -> float | None:
    """The share of `words` the story uses (`uses_word`); None when there are none to use."""
    if not words:
        return None
    return sum(uses_word(story, w) for w in words) / len(words)


def has_dialogue(story: str) -> bool:
    """Whether the story quotes speech: a pair of double quotes, straight (") or curly (“ ”), around at
    least one letter, within one paragraph. Quotes pair up in order (the first with the second, ...), so
    'a "..." and "1, 2"' has none. Single quotes are not counted: they cannot be told apart from
    apostrophes ("Lily's hat and Tom's" would pair up)."""
    return any(
        re.search(_LETTER, quoted) for paragraph in re.split(r"\n[ \t]*\n", story) for quoted in _quoted(paragraph)
    )


def _quoted(paragraph: str):
    """The texts between paired double quotes, in order. An opening curly quote while one is open starts
    again; a closing curly quote with none open is a stray."""
    opened = None
    for i, c in enumerate(paragraph):
        if c not in '"“”':
            continue
        if opened is None or c == "“":
            opened = None if c == "”" else i
        else:
            yield paragraph[opened + 1 : i]
            opened = None


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def sentence_used(story: str, sentence: str) -> bool | None:
    """Whether the story holds the requested sentence (ignoring case and runs of whitespace); None when
    none was requested."""
    return _normal(sentence) in _normal(story) if sentence.strip() else None


def repeats_prompt(story: str, record: Record) -> bool:
    """Whether the story repeats its prompt: it has a line starting with a field label ("Features:",
    "Words:", "Summary:", "Random sentence:", "Story:"), as a model that writes another record does, or
    it holds the whole summary verbatim (ignoring case and runs of whitespace). The random sentence is
    no repetition: the prompt asks for it. A single sentence of a longer summary is not checked: the
    built-in summaries end with a moral the story may say in the same words."""
    if _LABEL_IN_STORY.search(story):
        return True
    return bool(record.summary.strip()) and _normal(record.summary) in _normal(story)


def valid_utf8(data: bytes, ended: bool = True) -> bool:
    """Whether generated bytes are UTF-8. A story cut by the length budget (`ended` False) may stop
    inside a character: that incomplete tail is allowed."""
    try:
        codecs.getincrementaldecoder("utf-8")("strict").decode(data, final=ended)
    except UnicodeDecodeError:
        return False
    return True


def score_story(record: Record, story: bytes, ended: bool) -> dict:
    """Every check of one generated story (its bytes, without the end-of-text byte) against its record."""
    text = story.decode("utf-8", "replace")
    return {
        "words_used": words_used(text, record.words),
        "missing_words": [w for w in record.words if not uses_word(text, w)],
        "dialogue_asked": "dialogue" in {f.lower() for f in record.features},
        "dialogue": has_dialogue(text),
        "sentence_used": sentence_used(text, record.random_sentence),
        "ended": ended,
        "valid_utf8": valid_utf8(story, ended),
        "prompt_repeated": repeats_prompt(text, record),
        "story_bytes": len(story),
    }


def aggregate(scores: list[dict]) -> dict:
    """The scores of many stories in a few numbers; each share is over the stories it applies to, with
    how many those are (None when none: e.g. no prompt asked for dialogue)."""

    def share(values):
        values = [float(v) for v in values]
        return sum(values) / len(values) if values else None

    worded = [s for s in scores if s["words_used"] is not None]
    asked = [s for s in scores if s["dialogue_asked"]]
    unasked = [s for s in scores if not s["dialogue_asked"]]
    sentenced = [s for s in scores if s["sentence_used"] is not None]
    return {
        "prompts": len(scores),
        "words_used": share(s["words_used"] for s in worded),
        "all_words_used": share(s["words_used"] == 1 for s in worded),
        "prompts_with_words": len(worded),
        "dialogue_when_asked": share(s["dialogue"] for s in asked),
        "prompts_asking_dialogue": len(asked),
        "dialogue_when_not_asked": share(s["dialogue"] for s in unasked),
        "prompts_not_asking_dialogue": len(unasked),
        "sentence_used": share(s["sentence_used"] for s in sentenced),
        "prompts_with_sentence": len(sentenced),
        "stories_ended": share(s["ended"] for s in scores),
        "valid_utf8": share(s["valid_utf8"] for s in scores),
        "prompt_repeated": share(s["prompt_repeated"] for s in scores),
        "mean_story_bytes": share(s["story_bytes"] for s in scores),
    }


def mean_and_error(differences: list[float]) -> tuple[float, float]:
    """The mean of paired differences and its standard error (their sample standard deviation over the
    square root of their number); two differences at least."""
    return statistics.fmean(differences), statistics.stdev(differences) / math.sqrt(len(differences))


def words_gain(first: list[dict], other: list[dict]) -> dict | None:
    """How many more of the required words `other`'s stories use than `first`'s, written for the same
    prompts: the mean over prompts of the difference in words used, and its standard error (the
    differences' sample standard deviation over the square root of their number). Paired by prompt, so
    the spread between prompts (some ask for easy words) cancels out; a gain of about one standard error
    is what another draw of prompts could as well reverse. {"gain", "standard_error", "prompts"}; None
    when the prompts differ or fewer than two of them ask for words."""
    if [s["prompt"] for s in first] != [s["prompt"] for s in other]:
        return None
    pairs = [(a["words_used"], b["words_used"]) for a, b in zip(first, other) if a["words_used"] is not None]
    if len(pairs) < 2:
        return None
    gain, error = mean_and_error([b - a for a, b in pairs])
    return {"gain": gain, "standard_error": error, "prompts": len(pairs)}


# --- the model -------------------------------------------------------------------------------------------


def story_bytes(model, prompt: str, max_tokens: int, sampler, seed: int, guide=None) -> tuple[bytes, bool]:
    """(the bytes generated after `prompt`, without the end-of-text byte; whether that byte came within
    `max_tokens`). The same bytes as generate.generate(model, prompt, sampler=sampler, seed=seed,
    guide=guide), which would decode them; the checks need them raw. `guide`: a guide.WordGuide for the
    story (None: the model on its own)."""
    data, _ = fit_context(encode_prompt(prompt), model.config.context_length)
    ids = mx.array(np.frombuffer(data, dtype=np.uint8)[None])
    out = bytearray()
    if guide is not None:
        sampler = guide.sampler(sampler, 1, TEXT)
    with closing(generate_step(model, ids, keyed_sampler(sampler, seed, 1))) as steps:
        for _, y in zip(range(max_tokens), steps):
            value = y.item()
            if value == EOT:
                return bytes(out), True
            out.append(value)
    return bytes(out), False


def _chunks(length: int, context: int):
    """(first, end) spans covering range(length): the first `context` positions, then spans of half a
    context, each scored in the `context` positions that end with it, so every position but the first
    context's sees at least half a context before it (as generation does once its window slides)."""
    stride = max(context // 2, 1)
    first, end = 0, min(length, context)
    while first < length:
        yield first, end
        first, end = end, min(end + stride, length)


def position_losses(model, ids: np.ndarray) -> np.ndarray:
    """(L,) float32: the next-byte cross-entropy in nats of each byte of ids (L,), one sequence, position 0
    predicted by the start token, long sequences in windows of the context (`_chunks`)."""
    context = model.config.context_length
    out = np.zeros(len(ids), dtype=np.float32)
    for first, end in _chunks(len(ids), context):
        begin = max(end - context, 0)
        window = mx.array(ids[begin:end][None].astype(np.int32))  # (1, T)
        losses = cross_entropy(model(window, include_start=True)[:, :-1], window)[0]  # (T,): [t] is byte t's
        out[first:end] = np.array(losses[first - begin :].astype(mx.float32))
    return out


def summed_story_loss(model, ids: np.ndarray, mask: np.ndarray) -> tuple[float, int]:
    """(summed next-byte cross-entropy in nats over the positions `mask` marks, how many): as
    `position_losses` scores them."""
    mask = np.asarray(mask, dtype=bool)
    return float(position_losses(model, ids)[mask].sum(dtype=np.float64)), int(mask.sum())


def story_bits_per_byte(model, records: list[Record]) -> dict:
    """Bits per byte of the stories given their prompts: each record is scored as the model sees it in
    training (end-of-text byte, record, end-of-text byte), and only the bytes `story_mask` marks count."""
    total, counted = 0.0, 0
    for record in records:
        ids = np.frombuffer(encode_prompt(record.text) + bytes([EOT]), dtype=np.uint8)
        loss, n = summed_story_loss(model, ids, story_mask(ids))
        total, counted = total + loss, counted + n
    loss = total / counted if counted else math.nan
    return {"story_loss": loss, "story_bpb": loss / math.log(2), "story_bytes_counted": counted}


def byte_span(text: str, start: int, end: int) -> tuple[int, int]:
    """The byte offsets, in `text` encoded as the models read it (UTF-8, undecodable bytes kept through
    surrogateescape), of its character span [start, end): the bridge from `re` matches to loss masks.

    >>> byte_span("café au lait", 5, 7)
    (6, 8)
    """
    at = len(text[:start].encode("utf-8", "surrogateescape"))
    return at, at + len(text[start:end].encode("utf-8", "surrogateescape"))


def first_uses(story: str, words) -> list[tuple[int, int]]:
    """(start, end) character spans of each word's first use in `story` (as `uses_word` finds it), in
    story order; words the story does not use have none.

    >>> first_uses("A dog ran. The dogs sat by a hat.", ("hat", "dog"))
    [(2, 5), (29, 32)]
    """
    spans = []
    for word in words:
        forms = word_forms(word)
        if forms:
            pattern = f"(?<!{_LETTER})(?:{'|'.join(map(re.escape, sorted(forms, key=len, reverse=True)))})(?!{_LETTER})"
            match = re.search(pattern, story, re.IGNORECASE)
            if match:
                spans.append(match.span())
    return sorted(spans)


def first_use_mask(data) -> np.ndarray:
    """(len(data),) bool: in a stream of records (documents each ended by the end-of-text byte), the bytes
    of each required word's first use in its record's story (`first_uses`), which `train --words-weight`
    weighs: where a story needs its Words line, as later uses can copy the story itself.

    >>> first_use_mask(b"Words: hat\\nStory: A hat. My hat.\\x03").astype(int).tolist()[18:28]
    [0, 0, 1, 1, 1, 0, 0, 0, 0, 0]
    """
    ids = byte_array(data)
    mask = np.zeros(len(ids), dtype=bool)
    start = 0
    for end in [*np.flatnonzero(ids == EOT).tolist(), len(ids)]:
        document = ids[start:end].tobytes()
        if b"Story:" in document:
            try:
                record = parse_record(document.decode("utf-8", "surrogateescape"))
            except ValueError:  # "Story:" mid-line, or text before any field: no record
                record = None
            if record is not None and record.words:
                story_start = start + len(record.prompt.encode("utf-8", "surrogateescape"))
                for span in first_uses(record.story, record.words):
                    first, last = byte_span(record.story, *span)
                    mask[story_start + first : story_start + last] = True
        start = end + 1
    return mask


def with_words(record: Record, words) -> Record:
    """The record with its Words line asking for `words` instead (the rest of the prompt as it was)."""
    line = re.compile(r"^(Words:[ \t]*).*$", re.MULTILINE | re.IGNORECASE)
    prompt, count = line.subn(lambda m: m[1] + ", ".join(words), record.prompt, count=1)
    if not count:
        raise ValueError("the record's prompt has no Words line")
    return Record(record.features, tuple(words), record.summary, record.random_sentence, record.story, prompt)


def word_copy_bits(model, records: list[Record]) -> dict:
    """How much the Words line tells the model about the required words where its record's own story
    first writes them: the bits per byte of those bytes (each word's first use, `first_uses`) given the
    record's prompt, and given the same prompt asking for the next record's words instead. A model that
    reads its Words line spends fewer bits on them given their own; one that ignores it, the same (the
    difference is then 0 up to noise). Scored on the records' own stories, so unlike words used in
    sampled stories it needs no sampling and moves with small gains: the sensitive measure of whether
    copying from the prompt is being learned. The gain's standard error is over records (paired: the
    same bytes both ways). Records without words, or whose next record asks for the same ones, are skipped."""
    worded = [r for r in records if r.words and "words:" in r.prompt.lower()]
    differences, own_total, other_total, counted = [], 0.0, 0.0, 0
    for i, record in enumerate(worded):
        others = next(
            (
                r.words
                for r in worded[i + 1 :] + worded[:i]
                if {w.lower() for w in r.words} != {w.lower() for w in record.words}
            ),
            None,
        )
        spans = first_uses(record.story, record.words)
        if others is None or not spans:
            continue
        losses = []
        for asked in (record, with_words(record, others)):
            prefix = encode_prompt(asked.prompt)
            ids = np.frombuffer(encode_prompt(asked.text) + bytes([EOT]), dtype=np.uint8)  # as story_bits_per_byte
            mask = np.zeros(len(ids), dtype=bool)
            for span in spans:
                first, last = byte_span(asked.story, *span)
                mask[len(prefix) + first : len(prefix) + last] = True
            loss, n = summed_story_loss(model, ids, mask)
            losses.append(loss)
        own_total, other_total, counted = own_total + losses[0], other_total + losses[1], counted + n
        differences.append((losses[1] - losses[0]) / n / math.log(2))
    if len(differences) < 2:
        return {"words_copy_bits": None, "words_copy_bits_error": None, "words_copy_records": len(differences)}
    gain, error = mean_and_error(differences)
    return {
        "words_bits_given_words": own_total / counted / math.log(2),
        "words_bits_given_other_words": other_total / counted / math.log(2),
        "words_copy_bits": gain,
        "words_copy_bits_error": error,
        "words_copy_records": len(differences),
    }


def _mid_sentence(story: str, at: int) -> bool:
    """Whether the word at `at` follows a letter, a digit or a comma, colon or semicolon on its line: inside
    a sentence, where a capital says the word is a name."""
    before = story[:at].rstrip(" \t")
    return bool(before) and (before[-1].isalnum() or before[-1] in ",;:")


def name_spans(story: str) -> list[list[tuple[int, int]]]:
    """Each name's uses in `story` as (start, end) character spans, one list per name in order of first
    use. A name is a capitalised word (a capital, then lower-case letters) that the story uses at least
    twice, at least once inside a sentence (`_mid_sentence`: so "Then" and "Once", capitalised only where
    sentences start, are not names), and never in lower case ("Sunny" the dog is skipped beside a sunny
    day: its later uses need not be copies).

    >>> name_spans('Mia saw Tom. Then Tom ran to Mia, and "Mia!" he said.')
    [[(0, 3), (29, 32), (39, 42)], [(8, 11), (18, 21)]]
    """
    uses: dict[str, list[tuple[int, int]]] = {}
    inside: set[str] = set()
    lower: set[str] = set()
    for match in re.finditer(f"{_LETTER}+", story):
        word = match.group()
        if word.islower():
            lower.add(word)
        elif len(word) > 1 and word[0].isupper() and word[1:].islower():
            uses.setdefault(word, []).append(match.span())
            if _mid_sentence(story, match.start()):
                inside.add(word)
    return [spans for word, spans in uses.items() if len(spans) > 1 and word in inside and word.lower() not in lower]


def name_copy_bits(model, stories: list[str]) -> dict:
    """Whether the model copies from its context: in each story (scored on its own, as plain stories are
    trained: end-of-text byte, story, end-of-text byte), the bits per byte of its names' bytes after their
    first letter (`name_spans`) where a name is first used, against where it is used again. Given its
    first letter, a name's later use is a copy of the earlier one: a model that copies spends far fewer
    bits there; one that does not, about as many (stories draw their names at random, so nothing else
    predicts them). The gain (first minus later, per story) has its standard error over stories."""
    differences, first_total, later_total, first_counted, later_counted = [], 0.0, 0.0, 0, 0
    for story in stories:
        spans = name_spans(story)
        if not spans:
            continue
        ids = np.frombuffer(bytes([EOT]) + story.encode("utf-8", "surrogateescape") + bytes([EOT]), np.uint8)
        masks = np.zeros((2, len(ids)), dtype=bool)  # [0] first uses, [1] later ones
        for uses in spans:
            for k, (start, end) in enumerate(uses):
                begin, stop = byte_span(story, start + 1, end)  # after the first letter
                masks[min(k, 1), 1 + begin : 1 + stop] = True  # 1 + : the leading end-of-text byte
        losses = position_losses(model, ids)
        first, later = (float(losses[m].sum(dtype=np.float64)) for m in masks)
        n_first, n_later = (int(m.sum()) for m in masks)
        if not n_first or not n_later:  # one-letter names leave no bytes after the first
            continue
        first_total, later_total = first_total + first, later_total + later
        first_counted, later_counted = first_counted + n_first, later_counted + n_later
        differences.append((first / n_first - later / n_later) / math.log(2))
    if len(differences) < 2:
        return {"names_copy_bits": None, "names_copy_bits_error": None, "names_copy_stories": len(differences)}
    gain, error = mean_and_error(differences)
    return {
        "names_bits_first_use": first_total / first_counted / math.log(2),
        "names_bits_later_uses": later_total / later_counted / math.log(2),
        "names_copy_bits": gain,
        "names_copy_bits_error": error,
        "names_copy_stories": len(differences),
    }


def evaluate_instruct(
    model,
    records: list[Record],
    seed: int = DEFAULT_SEED,
    max_tokens: int = DEFAULT_STORY_BYTES,
    temp: float = DEFAULT_TEMP,
    top_p: float = DEFAULT_TOP_P,
    min_p: float = DEFAULT_MIN_P,
    top_k: int = DEFAULT_TOP_K,
    progress=None,
    guide=None,
) -> dict:
    """Write one story per record's prompt and score it: {"settings", "aggregate", "stories"}.

    Record i's story is drawn with seed + i (`generate --seed` with the same settings writes it again),
    so the same model, records and settings give the same numbers. The aggregate adds the stories' bits
    per byte given their prompts (`story_bits_per_byte`). `progress(done, total)` is called per story.
    Works for any model with the package's contract: model(ids, include_start=True), make_cache and
    config.context_length. `guide(record)`: the guide.WordGuide that guides record's story (None, or
    no function: the model on its own); its strength is in the settings.
    """
    sampler = make_sampler(temp, top_p, min_p, top_k)
    stories, strength = [], 0.0
    for i, record in enumerate(records):
        guiding = guide(record) if guide is not None else None
        strength = guiding.strength if guiding is not None else strength
        data, ended = story_bytes(model, record.prompt, max_tokens, sampler, seed + i, guiding)
        stories.append(
            {
                "seed": seed + i,
                "prompt": record.prompt,
                "story": data.decode("utf-8", "replace"),
                **score_story(record, data, ended),
            }
        )
        if progress:
            progress(i + 1, len(records))
    settings = {"seed": seed, "max_tokens": max_tokens, "temp": temp, "top_p": top_p, "min_p": min_p, "top_k": top_k}
    if strength:
        settings["guide_strength"] = strength
    summary = {
        **aggregate(stories),
        **story_bits_per_byte(model, records),
        **word_copy_bits(model, records),
        **name_copy_bits(model, [r.story for r in records]),
    }
    return {"settings": settings, "aggregate": summary, "stories": stories}


# --- reports ---------------------------------------------------------------------------------------------

# (aggregate key, row label, the key counting the stories it is over, or None for every story)
ROWS = (
    ("words_used", "words used", "prompts_with_words"),
    ("all_words_used", "all words used", "prompts_with_words"),
    ("dialogue_when_asked", "dialogue when asked", "prompts_asking_dialogue"),
    ("dialogue_when_not_asked", "dialogue when not asked", "prompts_not_asking_dialogue"),
    ("sentence_used", "random sentence used", "prompts_with_sentence"),
    ("stories_ended", "stories that end", None),
    ("valid_utf8", "valid UTF-8", None),
    ("prompt_repeated", "prompt repeated", None),
    ("mean_story_bytes", "mean story bytes", None),
    ("story_bpb", "story bits per byte", None),
    ("words_copy_bits", "words' bits saved by the Words line", None),
    ("names_copy_bits", "names' bits saved by their earlier uses", None),
)


def _cell(aggregate: dict, key: str, over: str | None) -> str:
    value = aggregate.get(key)
    if value is None or isinstance(value, float) and math.isnan(value):
        return "–"
    if key == "mean_story_bytes":
        return f"{value:,.0f}"
    if key == "story_bpb":
        return f"{value:.4f}"
    if key in ("words_copy_bits", "names_copy_bits"):
        return f"{value:+.3f} ± {aggregate[key + '_error']:.3f}"
    return f"{100 * value:.1f}%" + (f" of {aggregate[over]}" if over else "")


def comparison_table(results: dict[str, dict], title: str = "Stories on command") -> Table:
    """A rich table of several models' aggregates side by side: a column per model (e.g. base, tuned,
    tuned with a masked prompt), a row per measure. `results` maps a name to evaluate_instruct's result
    (or its "aggregate")."""
    table = Table(title=title)
    table.add_column("")
    for name in results:
        table.add_column(name, justify="right")
    aggregates = [result.get("aggregate", result) for result in results.values()]
    if any("model" in result for result in results.values()):  # what trained each: evaluate --instruct knows
        tuned = [result.get("model", {}).get("instruct_tuned") for result in results.values()]
        table.add_row("tuned on instruct data", *({True: "yes", False: "no", None: "unknown"}[t] for t in tuned))
    table.add_row("prompts", *(str(a["prompts"]) for a in aggregates))
    for key, label, over in ROWS:
        table.add_row(label, *(_cell(a, key, over) for a in aggregates))
        if key == "words_used" and (gains := _gains(results)):
            first = next(iter(results))
            table.add_row(
                f"  more than {first}, per prompt",
                "",
                *(f"{100 * g['gain']:+.1f} ± {100 * g['standard_error']:.1f} points" if g else "–" for g in gains),
            )
    return table


def _gains(results: dict[str, dict]) -> list[dict | None] | None:
    """words_gain of every model after the first against the first; None without stories to pair."""
    stories = [result.get("stories") for result in results.values()]
    if len(stories) < 2 or any(s is None for s in stories):
        return None
    return [words_gain(stories[0], other) for other in stories[1:]]


def comparison_json(results: dict[str, dict]) -> dict:
    """The table's JSON form: {"models": {name: {"settings", "aggregate"}}}; stories are left out (each
    evaluate_instruct result holds them). With stories, every model after the first also has
    "words_gain": its words_gain against the first."""
    gains = dict(zip(list(results)[1:], _gains(results) or ()))
    return {
        "models": {
            name: {
                "settings": result.get("settings"),
                "aggregate": result.get("aggregate", result),
                **({"model": result["model"]} if "model" in result else {}),
                **({"words_gain": gains[name]} if name in gains else {}),
            }
            for name, result in results.items()
        }
    }
