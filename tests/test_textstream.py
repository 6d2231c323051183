"""textstream.TextStream: one sample's tokens become the text handed out, step by step (expected outputs
written by hand)."""

from mlx_megabyte.text import EOT
from mlx_megabyte.textstream import TextStream
from mlx_megabyte.tokens import BYTES, TEXT


def feed(stream: TextStream, data: bytes) -> list[tuple[str, str | None]]:
    """(text, finish reason) of each step, until the stream finishes or the bytes run out."""
    steps = []
    for value in data:
        step = stream.push(value)
        steps.append((step.text, step.finish_reason))
        if stream.done:
            break
    return steps


def test_plain_text_comes_out_byte_by_byte_and_the_end_token_finishes_it():
    assert feed(TextStream(TEXT), b"ab" + bytes([EOT]) + b"c") == [("a", None), ("b", None), ("", "eot")]


def test_the_max_tokens_th_byte_finishes_with_length_and_is_handed_out():
    stream = TextStream(TEXT, max_tokens=3)
    assert feed(stream, b"abcd") == [("a", None), ("b", None), ("c", "length")]
    assert stream.done and stream.count == 3


def test_the_end_token_on_the_last_allowed_step_is_eot_not_length():
    assert feed(TextStream(TEXT, max_tokens=2), b"a" + bytes([EOT])) == [("a", None), ("", "eot")]


def test_a_stop_string_split_across_steps_is_held_back_then_cut():
    # "EN" could begin "END": held until it is known; "x" after "E" frees the "E"
    steps = feed(TextStream(TEXT, stop=("END",)), b"hi ExEND!")
    assert steps == [
        ("", None),  # "h": held (up to two characters could begin "END")
        ("", None),  # "hi"
        ("h", None),
        ("i", None),  # "hi E": " E" held
        (" ", None),  # "hi Ex"
        ("E", None),
        ("x", None),  # "...xEN": "EN" held
        ("", "stop"),  # "END" appeared: cut, never handed out
    ]
    assert "".join(text for text, _ in steps) == "hi Ex"


def test_held_text_comes_out_when_the_sample_ends_otherwise():
    assert feed(TextStream(TEXT, stop=("END",)), b"aE" + bytes([EOT])) == [("", None), ("", None), ("aE", "eot")]
    assert feed(TextStream(TEXT, stop=("END",), max_tokens=2), b"aE") == [("", None), ("aE", "length")]


def test_a_stop_string_at_the_very_start_gives_no_text():
    assert feed(TextStream(TEXT, stop=("\n",)), b"\nabc") == [("", "stop")]
    assert feed(TextStream(TEXT, stop=("ab",)), b"abc") == [("", None), ("", "stop")]


def test_the_earliest_of_several_stop_strings_cuts():
    steps = feed(TextStream(TEXT, stop=("cd", "b")), b"abcd")
    assert steps == [("", None), ("a", "stop")]


def test_a_stop_string_found_with_the_last_byte_is_stop_not_length():
    assert feed(TextStream(TEXT, stop=("b",), max_tokens=2), b"ab") == [("a", None), ("", "stop")]


def test_a_multibyte_character_split_across_steps_comes_out_once_complete():
    data = "é€😀".encode()  # 2 + 3 + 4 bytes
    steps = feed(TextStream(TEXT), data)
    assert [text for text, _ in steps] == ["", "é", "", "", "€", "", "", "", "😀"]


def test_invalid_utf8_becomes_the_replacement_character():
    # 0xFF is never UTF-8; 0xE2 0x41: a character cut short by an ASCII byte
    assert feed(TextStream(TEXT), b"\xffa\xe2A") == [("\ufffd", None), ("a", None), ("", None), ("\ufffdA", None)]


def test_an_unfinished_character_at_the_end_is_flushed_as_replacement():
    assert feed(TextStream(TEXT), b"a\xe2\x82" + bytes([EOT])) == [
        ("a", None),
        ("", None),
        ("", None),
        ("\ufffd", "eot"),
    ]
    assert feed(TextStream(TEXT, max_tokens=2), b"\xf0\x9f") == [("", None), ("\ufffd", "length")]


def test_spans_say_which_characters_each_decoder_call_made():
    stream = TextStream(TEXT)
    assert stream.push(0xE2).spans == [(0, 0)]  # nothing yet
    step = stream.push(0xC3)  # 0xE2 is cut short: U+FFFD now, 0xC3 still held
    assert (step.text, step.byte, step.spans) == ("\ufffd", 0xC3, [(0, 1)])
    step = stream.push(EOT)  # the flush gives 0xC3's U+FFFD with no new byte behind it
    assert (step.text, step.byte, step.finish_reason, step.spans) == ("\ufffd", None, "eot", [(1, 2)])
    assert stream.text == "\ufffd\ufffd"


def test_the_bytes_layout_maps_tokens_to_bytes_and_its_own_end_token():
    # bytes layout: byte b is token b + 1, and 257 ends; 3 (text's EOT) is just the byte 2 there
    stream = TextStream(BYTES)
    steps = [stream.push(token) for token in (ord("h") + 1, 3, BYTES.end)]
    assert [(s.text, s.byte, s.finish_reason) for s in steps] == [
        ("h", ord("h"), None),
        ("\x02", 2, None),
        ("", None, "eot"),
    ]


def test_tokens_after_the_end_are_ignored():
    stream = TextStream(TEXT, max_tokens=1)
    assert stream.push(ord("a")).finish_reason == "length"
    step = stream.push(EOT)
    assert (step.text, step.finish_reason, step.spans) == ("", "length", [])
    assert (stream.text, stream.count) == ("a", 1)
