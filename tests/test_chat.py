"""Chat requests for a story model: how messages become its prompt, every refusal as (status, param,
code), and answers the official openai client reads."""

import json

import pytest

try:
    import httpx2 as httpx  # what the openai client is built on from version 3
except ImportError:
    import httpx
from openai import OpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from mlx_megabyte.chat import completion_request, split_request, story_request
from mlx_megabyte.protocol import ApiError, chat_chunk, chat_chunks, chat_completion, usage
from mlx_megabyte.text import instruct_prompt, instruct_text


def user(content):
    return {"messages": [{"role": "user", "content": content}]}


# --- messages to a prompt ---


def test_a_plain_message_starts_a_story():
    request = story_request(user("Once upon a time, a cat"))
    assert (request.prompt, request.instruct, request.fields) == ("Once upon a time, a cat", False, {})
    assert story_request(user("  Once\n")).prompt == "  Once\n"  # as written


def test_text_parts_are_joined_with_line_breaks():
    parts = [{"type": "text", "text": "Features: Dialogue"}, {"type": "text", "text": "Words: dog, run"}]
    assert story_request(user(parts)).prompt == instruct_prompt("Dialogue", "dog, run")


def test_field_lines_in_any_order_with_a_story_line_and_a_start():
    text = "words: dog, run\r\n\nSummary: A dog runs.\nFEATURES: Dialogue\nStory:\n\nThe dog"
    request = story_request(user(text))
    assert request.fields == {"words": "dog, run", "summary": "A dog runs.", "features": "Dialogue"}
    assert request.story_start == "The dog"
    assert request.prompt == "Features: Dialogue\nWords: dog, run\nSummary: A dog runs.\nStory: \n\nThe dog"


def test_field_lines_without_a_story_line():
    request = story_request(user("Summary: Mia finds a hat.\nRandom sentence: It was red.\nMia looked"))
    assert request.prompt == "Summary: Mia finds a hat.\nRandom sentence: It was red.\nStory: \n\nMia looked"
    assert story_request(user("Words: cat")).prompt == instruct_prompt(words="cat")


def test_a_field_line_after_story_text_is_story():
    text = "Once upon a time.\nWords: cat"
    assert story_request(user(text)).prompt == text
    assert split_request("Words:\nOnce") == ({}, "Words:\nOnce")  # an empty field is no field


def test_request_fields_become_the_instruct_layout():
    body = {**user(""), "features": ["Dialogue", "Twist"], "words": "dog, run", "summary": " A dog runs. "}
    assert story_request(body).prompt == instruct_prompt("Dialogue, Twist", "dog, run", "A dog runs.")
    body = {**user("The dog"), "words": ["dog"], "random_sentence": "It ran."}
    assert story_request(body).prompt == instruct_text(words="dog", random_sentence="It ran.", story="The dog")
    body = {**user("Summary: A dog runs."), "features": "Dialogue"}  # different fields combine
    assert story_request(body).prompt == instruct_prompt("Dialogue", summary="A dog runs.")
    assert story_request({**user("Hi"), "words": "", "summary": None}).prompt == "Hi"  # empty: not given


def test_system_messages_and_earlier_turns_are_ignored():
    body = {
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Words: cat"},
            {"role": "assistant", "content": [{"type": "text", "text": "Once there was a cat."}]},
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "Once upon a time", "name": "Sam"},
        ]
    }
    assert story_request(body).prompt == "Once upon a time"


def test_the_completions_request_that_writes_the_story():
    body = {
        **user("Words: cat"),
        "model": "x",
        "max_completion_tokens": 64,
        "temperature": 0.5,
        "top_p": 0.9,
        "seed": 7,
        "n": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
        "stop": ["\n\n"],
        "echo": True,
        "logprobs": False,
        "words_extra": 1,
        "user": "u",
    }
    completion, request = completion_request(body)
    assert completion == {
        "prompt": instruct_prompt(words="cat"),
        "max_tokens": 64,
        "temperature": 0.5,
        "top_p": 0.9,
        "seed": 7,
        "n": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
        "stop": ["\n\n"],
    }
    assert request.fields == {"words": "cat"}
    assert completion_request({**user("Hi"), "max_tokens": 5})[0] == {"prompt": "Hi", "max_tokens": 5}
    assert completion_request({**user("Hi"), "max_tokens": 5, "max_completion_tokens": 5})[0]["max_tokens"] == 5
    assert completion_request(user("Hi"))[0] == {"prompt": "Hi"}  # the completions default applies


# --- refusals ---


def refusal(body, call=story_request):
    with pytest.raises(ApiError) as caught:
        call(body)
    error = caught.value
    assert "\n" not in error.message
    assert error.body() == {
        "error": {"message": error.message, "type": "invalid_request_error", "param": error.param, "code": error.code}
    }
    return error.status, error.param, error.code


@pytest.mark.parametrize(
    "body, expected",
    [
        ([{"role": "user"}], (None, "invalid_body")),
        ({}, ("messages", "missing_required_parameter")),
        ({"messages": None}, ("messages", "missing_required_parameter")),
        ({"messages": "Once"}, ("messages", "invalid_type")),
        ({"messages": []}, ("messages", "empty_array")),
        ({"messages": ["Once"]}, ("messages[0]", "invalid_type")),
        ({"messages": [{"content": "Once"}]}, ("messages[0].role", "invalid_type")),
        ({"messages": [{"role": 1, "content": "Once"}]}, ("messages[0].role", "invalid_type")),
        (
            {"messages": [{"role": "tool", "content": "4", "tool_call_id": "a"}]},
            ("messages[0].role", "unsupported_role"),
        ),
        ({"messages": [{"role": "function", "content": "4"}]}, ("messages[0].role", "unsupported_role")),
        ({"messages": [{"role": "narrator", "content": "Once"}]}, ("messages[0].role", "invalid_value")),
        (
            {
                "messages": [
                    {"role": "assistant", "content": None, "tool_calls": [{"id": "a"}]},
                    {"role": "user", "content": "x"},
                ]
            },
            ("messages[0].tool_calls", "unsupported_parameter"),
        ),
        ({"messages": [{"role": "user"}]}, ("messages[0].content", "invalid_type")),
        ({"messages": [{"role": "user", "content": None}]}, ("messages[0].content", "invalid_type")),
        ({"messages": [{"role": "user", "content": 5}]}, ("messages[0].content", "invalid_type")),
        ({"messages": [{"role": "user", "content": {"text": "Once"}}]}, ("messages[0].content", "invalid_type")),
        ({"messages": [{"role": "user", "content": ["Once"]}]}, ("messages[0].content[0]", "invalid_type")),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "Once"}, {"type": "image_url", "image_url": {"url": "x"}}],
                    }
                ]
            },
            ("messages[0].content[1].type", "unsupported_content"),
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            ("messages[0].content[0].type", "unsupported_content"),
        ),
        (
            {"messages": [{"role": "user", "content": [{"text": "Once"}]}]},
            ("messages[0].content[0].type", "unsupported_content"),
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
            ("messages[0].content[0].text", "invalid_type"),
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]},
            ("messages[0].content[0].text", "invalid_type"),
        ),
        ({"messages": [{"role": "user", "content": "Once \ud800"}]}, ("messages[0].content", "invalid_text")),
        (
            {
                "messages": [
                    {"role": "system", "content": [{"type": "text", "text": "\udfff"}]},
                    {"role": "user", "content": "x"},
                ]
            },
            ("messages[0].content[0].text", "invalid_text"),
        ),  # ignored messages are checked too
        (
            {"messages": [{"role": "system", "content": 7}, {"role": "user", "content": "x"}]},
            ("messages[0].content", "invalid_type"),
        ),
        (
            {"messages": [{"role": "user", "content": "Once"}, {"role": "assistant", "content": "upon"}]},
            ("messages[1].role", "last_message_not_user"),
        ),
        ({"messages": [{"role": "system", "content": "Tell a story."}]}, ("messages[0].role", "last_message_not_user")),
        (user(""), ("messages[0].content", "empty_content")),
        (user(" \n\t"), ("messages[0].content", "empty_content")),
        (user([]), ("messages[0].content", "empty_content")),
        ({**user(""), "words": " "}, ("messages[0].content", "empty_content")),
        (user("Words: a\nSummary: b\nwords: c"), ("messages[0].content", "duplicate_field")),
        ({**user("Words: a"), "words": "b"}, ("words", "conflicting_fields")),
        ({**user("Words: a"), "words": ["a"]}, ("words", "conflicting_fields")),
        ({**user("Hi"), "features": 3}, ("features", "invalid_type")),
        ({**user("Hi"), "words": ["dog", 1]}, ("words", "invalid_type")),
        ({**user("Hi"), "summary": ["A dog runs."]}, ("summary", "invalid_type")),
        ({**user("Hi"), "summary": "\ud800"}, ("summary", "invalid_text")),
        (
            {**user("Hi"), "tools": [{"type": "function", "function": {"name": "f"}}]},
            ("tools", "unsupported_parameter"),
        ),
        ({**user("Hi"), "tool_choice": "auto"}, ("tool_choice", "unsupported_parameter")),
        ({**user("Hi"), "functions": [{"name": "f"}]}, ("functions", "unsupported_parameter")),
        ({**user("Hi"), "response_format": {"type": "json_object"}}, ("response_format", "unsupported_parameter")),
        ({**user("Hi"), "logprobs": True}, ("logprobs", "unsupported_parameter")),
        ({**user("Hi"), "top_logprobs": 2}, ("top_logprobs", "unsupported_parameter")),
        ({**user("Hi"), "modalities": ["text", "audio"]}, ("modalities", "unsupported_parameter")),
    ],
)
def test_every_refusal_names_its_param_and_code(body, expected):
    assert refusal(body) == (400, *expected)


def test_harmless_values_of_unsupported_fields_pass():
    body = {
        **user("Hi"),
        "tools": [],
        "tool_choice": "none",
        "response_format": {"type": "text"},
        "logprobs": False,
        "modalities": ["text"],
        "functions": None,
    }
    assert story_request(body).prompt == "Hi"


@pytest.mark.parametrize(
    "extra, expected",
    [
        ({"max_completion_tokens": "5"}, ("max_completion_tokens", "invalid_type")),
        ({"max_completion_tokens": True}, ("max_completion_tokens", "invalid_type")),
        ({"max_completion_tokens": 2.5}, ("max_completion_tokens", "invalid_type")),
        ({"max_completion_tokens": -1}, ("max_completion_tokens", "invalid_value")),
        ({"max_completion_tokens": 5, "max_tokens": 6}, ("max_completion_tokens", "conflicting_fields")),
    ],
)
def test_token_limit_refusals(extra, expected):
    assert refusal({**user("Hi"), **extra}, completion_request) == (400, *expected)


# --- answers ---


def test_a_chat_completion():
    body = chat_completion(
        "chatcmpl-1", "demo", ["Once upon a time.", "The end"], ["eot", "length"], usage(10, 25), created=123
    )
    assert body == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 123,
        "model": "demo",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Once upon a time.", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            },
            {
                "index": 1,
                "message": {"role": "assistant", "content": "The end", "refusal": None},
                "logprobs": None,
                "finish_reason": "length",
            },
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 25, "total_tokens": 35},
    }
    parsed = ChatCompletion.model_validate(body)  # as the openai client reads it
    assert parsed.choices[1].message.content == "The end" and parsed.usage.total_tokens == 35


def test_chunks_give_the_role_then_text_then_the_reason():
    pieces = [(0, "Once", None), (1, "", None), (1, "The", None), (0, " upon", "stop"), (1, "", "length")]
    chunks = list(chat_chunks("chatcmpl-2", "demo", pieces, created=5))
    deltas = [(c["choices"][0]["index"], c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks]
    assert deltas == [
        (0, {"role": "assistant", "content": ""}, None),
        (0, {"content": "Once"}, None),
        (1, {"role": "assistant", "content": ""}, None),
        (1, {"content": "The"}, None),
        (0, {"content": " upon"}, None),
        (0, {}, "stop"),
        (1, {}, "length"),
    ]
    assert {(c["id"], c["object"], c["created"], c["model"]) for c in chunks} == {
        ("chatcmpl-2", "chat.completion.chunk", 5, "demo")
    }
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    last = chat_chunk("chatcmpl-2", "demo", 5, [], usage(3, 4))
    assert last["choices"] == [] and ChatCompletionChunk.model_validate(last).usage.total_tokens == 7


def fake_server(seen):
    """An httpx transport that answers chat requests as an endpoint built on this module would, writing
    " upon a time." (and " and then" for a second sample) instead of running a model."""
    stories = [" upon a time.", " and then"]

    def handle(request: httpx.Request) -> httpx.Response:
        try:
            completion, asked = completion_request(json.loads(request.content))
        except ApiError as error:
            return httpx.Response(error.status, json=error.body())
        seen.append(completion)
        texts = stories[: completion.get("n", 1)]
        prompt_tokens = len(asked.prompt.encode()) + 1  # the end-of-text byte in front
        counts = usage(prompt_tokens, sum(map(len, texts)))
        if not completion.get("stream"):
            return httpx.Response(200, json=chat_completion("chatcmpl-t", "demo", texts, ["eot"] * len(texts), counts))
        pieces = [(i, text, None) for i, text in enumerate(texts)] + [(i, "", "eot") for i in range(len(texts))]
        chunks = list(chat_chunks("chatcmpl-t", "demo", pieces))
        if completion.get("stream_options", {}).get("include_usage"):
            chunks.append(chat_chunk("chatcmpl-t", "demo", chunks[0]["created"], [], counts))
        events = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return httpx.Response(200, text=events, headers={"Content-Type": "text/event-stream"})

    return httpx.MockTransport(handle)


def test_the_openai_client_round_trip_plain_and_streamed():
    seen = []
    client = OpenAI(api_key="none", base_url="http://test/v1", http_client=httpx.Client(transport=fake_server(seen)))
    messages = [{"role": "system", "content": "ignored"}, {"role": "user", "content": "Once"}]
    answer = client.chat.completions.create(
        model="demo",
        messages=messages,
        n=2,
        seed=3,
        max_completion_tokens=40,
        temperature=0.5,
        top_p=0.9,
        stop=["\n\n"],
    )
    assert [c.message.content for c in answer.choices] == [" upon a time.", " and then"]
    assert [c.finish_reason for c in answer.choices] == ["stop", "stop"]
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (5, 22)
    assert seen[-1] == {
        "prompt": "Once",
        "max_tokens": 40,
        "n": 2,
        "seed": 3,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["\n\n"],
    }

    stream = client.chat.completions.create(
        model="demo",
        messages=[{"role": "user", "content": "Words: cat"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"summary": "A cat naps."},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == " upon a time."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.prompt_tokens == len(instruct_prompt(words="cat", summary="A cat naps.")) + 1
    assert seen[-1]["prompt"] == instruct_prompt(words="cat", summary="A cat naps.")

    with pytest.raises(Exception) as caught:  # openai.BadRequestError, carrying our error body
        client.chat.completions.create(model="demo", messages=[{"role": "assistant", "content": "Once"}])
    assert caught.value.status_code == 400 and caught.value.body["code"] == "last_message_not_user"
