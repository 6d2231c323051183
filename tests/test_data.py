"""Sources -> encoded bytes -> batches."""

import json
import time

import numpy as np
import pytest

from mlx_megabyte import data
from mlx_megabyte.errors import UserError

from .helpers import one_line_error, run

STORIES = [
    "Once upon a time, a little cat named Mia found a red ball.",
    "Tom and Zoë played in the park.\nThey laughed all day.",  # a line break and a multi-byte character
    'The old turtle walked to the pond. "Hello!" said the frog.',
] * 40


def write_sources(folder):
    (folder / "stories.txt").write_text("\n<|endoftext|>\n".join(STORIES))
    (folder / "text.jsonl").write_text("".join(json.dumps({"text": s}) + "\n" for s in STORIES))
    (folder / "story.jsonl").write_text(
        "".join(json.dumps({"story": s, "id": i}) + "\n" for i, s in enumerate(STORIES))
    )
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": STORIES, "other": list(range(len(STORIES)))}), folder / "stories.parquet")


def expected_stream(stories):
    return b"".join(s.encode() + bytes([data.EOT]) for s in stories)


def test_local_formats_give_identical_bytes(tmp_path):
    write_sources(tmp_path)
    streams = []
    for name in ("stories.txt", "text.jsonl", "story.jsonl", "stories.parquet"):
        corpus = data.prepare(str(tmp_path / name), val_fraction=0.1, cache_dir=tmp_path / "cache")
        streams.append(bytes(corpus.train) + bytes(corpus.val))
        # the held-out tail starts at a story boundary
        assert bytes(corpus.train).endswith(bytes([data.EOT]))
        assert 0.08 < len(corpus.val) / len(streams[-1]) < 0.13
    assert all(s == expected_stream(STORIES) for s in streams)


def test_directory_glob_and_val_data(tmp_path):
    write_sources(tmp_path)
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "v.txt").write_text("A validation story.<|endoftext|>Another one.")
    corpus = data.prepare(str(tmp_path / "*.jsonl"), val_data=str(tmp_path / "val"), cache_dir=tmp_path / "cache")
    assert bytes(corpus.train) == expected_stream(STORIES) * 2  # story.jsonl then text.jsonl, sorted
    assert bytes(corpus.val) == expected_stream(["A validation story.", "Another one."])


def test_any_bytes_pass_through_text_files(tmp_path):
    raw = b"caf\xe9 au lait \xff\xfe" + b"<|endoftext|>" + b"second \x00document\x03"
    (tmp_path / "latin1.txt").write_bytes(raw)
    corpus = data.prepare(str(tmp_path / "latin1.txt"), val_fraction=0.3, cache_dir=tmp_path / "cache")
    # 0x00 (pad_id) and 0x03 (end of text) cannot stand in a document: they become 0x1A, and are counted
    assert bytes(corpus.train) + bytes(corpus.val) == b"caf\xe9 au lait \xff\xfe\x03second \x1adocument\x1a\x03"
    assert corpus.encodings["train"][1].replaced == {0x00: 1, 0x03: 1}


def test_local_documents_keep_their_whitespace(tmp_path):
    """Every document's leading and trailing whitespace was stripped; a marker on a line of its own now
    takes only its own line breaks."""
    text = "  An indented story.\n\n"
    (tmp_path / "plain.txt").write_text(text)
    (tmp_path / "marked.txt").write_bytes(b"\tfirst \n<|endoftext|>\n\n second\r\n<|endoftext|>\r\n third\n\n")
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": text}) + "\n" + json.dumps({"text": "   "}) + "\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": [text, "   "]}), tmp_path / "d.parquet")
    streams = {}
    for name in ("plain.txt", "marked.txt", "d.jsonl", "d.parquet"):
        corpus = data.prepare(str(tmp_path / name), val_fraction=0.5, cache_dir=tmp_path / "cache")
        streams[name] = bytes(corpus.train) + bytes(corpus.val)
    assert streams["plain.txt"] == text.encode() + b"\x03" and len(streams["plain.txt"]) == len(text) + 1
    assert streams["marked.txt"] == b"\tfirst \x03\n second\x03 third\n\n\x03"
    assert streams["d.jsonl"] == streams["d.parquet"] == text.encode() + b"\x03   \x03"


def test_the_data_line_says_exactly_what_was_changed_and_evaluate_counts_a_files_true_bytes(tmp_path):
    """evaluate reported 303,042 bytes of a 303,076-byte file: whitespace stripped, 0x00 and 0x03 dropped."""
    from mlx_megabyte import MEGABYTE, PRESETS, save

    save(MEGABYTE(PRESETS["tiny"]), tmp_path / "model")
    raw = b"  Leading spaces, a NUL \x00, an ETX \x03 and a second NUL \x00.\n\n" * 20
    (tmp_path / "notes.txt").write_bytes(raw)
    common = ["--data", str(tmp_path / "notes.txt"), "--cache-dir", str(tmp_path / "cache")]
    result = run("-m", "mlx_megabyte.evaluate", "--model", str(tmp_path / "model"), *common)
    assert result.returncode == 0, result.stderr
    line = [line for line in result.stderr.splitlines() if line.startswith("data: ")][0]
    assert f"1 document ({len(raw):,} bytes), each followed by the end-of-text byte 0x03" in line
    assert "40 bytes 0x00 (pad_id" in line and "20 bytes 0x03 (end of text" in line and "replaced by 0x1A" in line
    assert f"over {len(raw) + 1:,} bytes of" in result.stdout
    assert f"{len(raw):,} bytes of text and 1 end-of-text byte" in result.stdout
    trained = run(
        "-m",
        "mlx_megabyte.train",
        "--preset",
        "tiny",
        *common,
        "--val-fraction",
        "0.5",
        "--iters",
        "1",
        "--batch-size",
        "1",
        "--eval-batches",
        "1",
        "--steps-per-sample",
        "0",
        "--quiet",
        "--save-path",
        str(tmp_path / "run"),
        env={"COLUMNS": "1000"},
    )  # (rich wraps at 80 otherwise)
    assert trained.returncode == 0, trained.stderr
    line = [line for line in trained.stderr.splitlines() if line.startswith("data: ")][0]
    assert (
        f"--data {tmp_path / 'notes.txt'}: 1 document ({len(raw):,} bytes)" in line and "40 bytes 0x00 (pad_id" in line
    )


def test_an_empty_file_is_named_by_its_flag_and_a_tiny_validation_split_names_the_flags_that_help(tmp_path):
    """evaluate said "(train) holds no text", though it has no train split; a directory whose last 5%
    of documents is tiny said "the validation data holds 21 bytes" with no hint."""
    from mlx_megabyte import MEGABYTE, PRESETS, save

    save(MEGABYTE(PRESETS["tiny"]), tmp_path / "model")
    (tmp_path / "empty.txt").write_bytes(b"")
    line = one_line_error(
        run(
            "-m",
            "mlx_megabyte.evaluate",
            "--model",
            str(tmp_path / "model"),
            "--data",
            str(tmp_path / "empty.txt"),
            "--cache-dir",
            str(tmp_path / "cache"),
        ),
        f"--data {tmp_path / 'empty.txt'} holds no text",
    )
    assert "(train)" not in line
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("A long story about a cat. " * 120)
    (tmp_path / "docs" / "b.txt").write_text("A short one.")
    one_line_error(
        run(
            "-m",
            "mlx_megabyte.train",
            "--preset",
            "tiny",
            "--data",
            str(tmp_path / "docs"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--save-path",
            str(tmp_path / "run"),
        ),
        "the validation data",
        "holds 13 bytes",
        "--val-fraction",
        "--val-data",
    )


def test_bad_inputs_are_user_errors(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\nnot json\n')
    with pytest.raises(UserError, match="bad.jsonl:2"):
        data.prepare(str(tmp_path / "bad.jsonl"), cache_dir=tmp_path / "cache")
    (tmp_path / "nofield.jsonl").write_text('{"title": "x"}\n')
    with pytest.raises(UserError, match="'text' or 'story'"):
        data.prepare(str(tmp_path / "nofield.jsonl"), cache_dir=tmp_path / "cache")
    with pytest.raises(UserError, match="no such file"):
        data.prepare(str(tmp_path / "missing.txt"), cache_dir=tmp_path / "cache")
    (tmp_path / "empty.txt").write_text("")  # (whitespace is text: see test_local_documents_keep_their_whitespace)
    with pytest.raises(UserError, match="holds no text"):
        data.prepare(str(tmp_path / "empty.txt"), cache_dir=tmp_path / "cache")


def test_a_lone_surrogate_in_a_jsonl_text_is_one_line_naming_the_line(tmp_path):
    """JSON can escape a lone UTF-16 surrogate, which is no text (once a traceback from the encoder)."""
    (tmp_path / "d.jsonl").write_text('{"text": "fine"}\n{"text": "Once \\ud800 upon a time"}\n')
    result = run(
        "-m",
        "mlx_megabyte.train",
        "--preset",
        "tiny",
        "--data",
        str(tmp_path / "d.jsonl"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--save-path",
        str(tmp_path / "run"),
    )
    one_line_error(result, "d.jsonl:2", "lone UTF-16 surrogate (\\ud800)")


def test_hub_schema_from_local_files(tmp_path):
    """The hub code path on local folders laid out like roneneldan/TinyStories (parquet, a story per row)
    and roneneldan/TinyStoriesInstruct (text files, a line per row, <|endoftext|> lines between records)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    stories = tmp_path / "TinyStories" / "data"
    stories.mkdir(parents=True)
    pq.write_table(pa.table({"text": STORIES[:30]}), stories / "train-00000-of-00001.parquet")
    pq.write_table(pa.table({"text": STORIES[30:33]}), stories / "validation-00000-of-00001.parquet")
    assert list(data.hub_documents(str(stories.parent), "train")) == STORIES[:30]
    assert list(data.hub_documents(str(stories.parent), "validation")) == STORIES[30:33]

    instruct = tmp_path / "TinyStoriesInstruct"
    instruct.mkdir()
    records = [
        "Features: Dialogue\nWords: cat, run, red\nSummary: A cat runs.\nStory: \n\nThe cat ran.",
        "Words: a, b, c\nStory: \n\nDone.",
    ]
    text = "".join(record + "\n<|endoftext|>\n" for record in records)
    (instruct / "train.txt").write_text(text)
    (instruct / "validation.txt").write_text(text)
    assert list(data.hub_documents(str(instruct), "train")) == records


def test_offline_hub_fails_fast_with_one_line(tmp_path):
    start = time.perf_counter()
    result = run(
        "-m",
        "mlx_megabyte.train",
        "--data",
        "tinystories",
        "--cache-dir",
        str(tmp_path / "c"),
        env={"HF_HOME": str(tmp_path / "hf")},
    )
    elapsed = time.perf_counter() - start
    one_line_error(result, "--data PATH", "--data builtin")
    assert elapsed < 20, elapsed  # not datasets' ~25 s of retries (a bound that only catches those)


def test_batches_are_reproducible_resumable_and_sharded():
    stream = np.arange(1000, dtype=np.uint8)
    a = data.Batches(stream, 16, 4, seed=3)
    first = next(a)
    assert first.shape == (4, 16) and first.dtype == np.uint8
    assert all(np.array_equal(row, np.arange(row[0], row[0] + 16, dtype=np.uint8)) for row in first)
    saved = json.loads(json.dumps(a.state))  # checkpoints keep it as JSON
    expected = [next(a) for _ in range(3)]
    b = data.Batches(stream, 16, 4, seed=99)
    b.state = saved
    assert all(np.array_equal(x, next(b)) for x in expected)
    # two ranks of 2 see exactly the global batch of 4 that one rank of 4 sees
    whole = next(data.Batches(stream, 16, 4, seed=5))
    halves = [next(data.Batches(stream, 16, 2, seed=5, rank=r, world=2)) for r in (0, 1)]
    assert np.array_equal(np.concatenate(halves), whole)


def test_evaluation_windows_are_fixed_and_cover_the_data():
    stream = np.arange(256, dtype=np.uint8).repeat(4)
    windows = data.evaluation_windows(stream, 32, 8)
    assert windows.shape == (8, 32)
    assert windows[0, 0] == stream[0] and windows[-1, -1] == stream[-1]
    with pytest.raises(UserError, match="fewer than one window"):
        data.evaluation_windows(stream[:10], 32, 8)


def test_text_columns_holding_numbers_or_nulls(tmp_path):
    """Nulls are missing documents (skipped); numbers are one-line errors naming the file (issue 14.7)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": [STORIES[0], None, STORIES[1]] * 20}), tmp_path / "nulls.parquet")
    (tmp_path / "nulls.jsonl").write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in [STORIES[0], None, STORIES[1]] * 20)
    )
    for name in ("nulls.parquet", "nulls.jsonl"):
        corpus = data.prepare(str(tmp_path / name), val_fraction=0.1, cache_dir=tmp_path / "cache")
        assert bytes(corpus.train) + bytes(corpus.val) == expected_stream([STORIES[0], STORIES[1]] * 20)

    pq.write_table(pa.table({"text": list(range(50))}), tmp_path / "numbers.parquet")
    (tmp_path / "numbers.jsonl").write_text('{"text": "a story"}\n{"text": 5}\n')
    with pytest.raises(UserError, match="numbers.parquet: the 'text' column holds int64, not strings"):
        data.prepare(str(tmp_path / "numbers.parquet"), cache_dir=tmp_path / "cache")
    with pytest.raises(UserError, match="numbers.jsonl:2: 'text' holds a int, not a string"):
        data.prepare(str(tmp_path / "numbers.jsonl"), cache_dir=tmp_path / "cache")
    for command in ("train", "evaluate"):
        extra = ["--save-path", str(tmp_path / "run")] if command == "train" else ["--model", "weights/demo"]
        result = run(
            "-m",
            f"mlx_megabyte.{command}",
            "--data",
            str(tmp_path / "numbers.parquet"),
            "--cache-dir",
            str(tmp_path / "cache"),
            *extra,
        )
        one_line_error(result, "not strings")


def test_the_cache_is_keyed_by_content_and_abandoned_encodings_are_cleaned_up(tmp_path, monkeypatch):
    import os

    source = tmp_path / "stories.txt"
    source.write_text("\n<|endoftext|>\n".join(STORIES))
    first = data.prepare(str(source), cache_dir=tmp_path / "cache")
    stat = source.stat()
    source.write_text("\n<|endoftext|>\n".join(s.replace("cat", "dog") for s in STORIES))  # same size
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the old modification time
    assert source.stat().st_size == stat.st_size
    second = data.prepare(str(source), cache_dir=tmp_path / "cache")
    assert second.directory != first.directory and b"dog" in bytes(second.train)

    # a killed encoding: a half-written temporary file and a folder with no meta.json, long ago
    abandoned = tmp_path / "cache" / "data" / "stories-0123456789abcdef"
    abandoned.mkdir()
    (abandoned / ".train.bin.x1y2.tmp").write_bytes(b"partial")
    leftover = second.directory / ".val.bin.abcd.tmp"
    leftover.write_bytes(b"partial")
    (second.directory / "meta.json").unlink()  # so this one is encoded again, under its lock
    old = abandoned.stat().st_mtime - data.ABANDONED_AFTER - 1
    os.utime(abandoned, (old, old))
    again = data.prepare(str(source), cache_dir=tmp_path / "cache")
    assert not abandoned.exists() and not leftover.exists()
    assert bytes(again.train) == bytes(second.train)
    recent = tmp_path / "cache" / "data" / "stories-fedcba9876543210"
    recent.mkdir()  # just made by another process that has not locked it yet: left alone
    data.prepare(str(source), cache_dir=tmp_path / "cache")
    assert recent.exists()
