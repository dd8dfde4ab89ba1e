"""Request bodies of the OpenAI API, checked into a ``Completion`` before anything runs.

Both endpoints take OpenAI's field names (what the official clients send) and
textgen's own ``top_k``, ``beam_width`` and ``length_penalty`` (sent by the
clients as extra body fields, as vLLM takes them). Every value goes through the
same rule as `textgen sample`'s option (config.SamplingConfig), so the two
refuse the same things, named as the API spells them. An unknown field is
refused rather than ignored: a misspelt ``temprature`` would otherwise sample
at 1.0 without a word.
"""

import dataclasses
import json

from textgen.config import SamplingConfig
from textgen.errors import TextgenError
from textgen.limits import (
    MAX_CHOICES,
    MAX_COMPLETION_TOKENS,
    MAX_LOGPROBS,
    MAX_REQUEST_BYTES,
    MAX_STOP_STRINGS,
    MAX_WHOLE_LOGPROBS,
)
from textgen.settings import rule_of

# A char-RNN writes characters, not chat turns: 256 of them unless a request says otherwise.
DEFAULT_MAX_TOKENS = 256

_SAMPLING_FIELDS = {field.name: field for field in dataclasses.fields(SamplingConfig)}
# API name -> SamplingConfig field, for the fields whose rule is textgen's own.
_SAMPLING_NAMES = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "seed": "seed",
    "beam_width": "beam_width",
    "length_penalty": "length_penalty",
}
_COMMON = {
    "model",
    "max_tokens",
    "n",
    "stop",
    "stream",
    "stream_options",
    "logprobs",
    "user",
    "presence_penalty",
    "frequency_penalty",
    *_SAMPLING_NAMES,
}
ALLOWED_FIELDS = {
    "completions": _COMMON | {"prompt", "echo"},
    "chat": _COMMON | {"messages", "max_completion_tokens", "top_logprobs"},
}


class RequestRefused(TextgenError):
    """A request the server will not run: an HTTP status and OpenAI's error fields."""

    def __init__(self, message, *, param=None, status=400, code=None, kind="invalid_request_error"):
        super().__init__(message)
        self.param, self.status, self.code, self.kind = param, status, code, kind


@dataclasses.dataclass(frozen=True)
class Completion:
    """One checked request: which model, how to sample, and what to send back."""

    model: str
    settings: SamplingConfig  # prompt, length (max_tokens), the strategy's settings, num_samples = n
    choices: int  # n
    stream: bool
    logprobs: int | None  # the top-N alternatives per token (0: only the chosen token's); None: none
    echo: bool  # completions: the prompt is repeated before the text
    include_usage: bool  # a stream ends with a chunk holding the token counts
    chat: bool


def read_json(body):
    """The JSON object in ``body`` (bytes), or a refusal saying what is wrong with it."""
    if len(body) > MAX_REQUEST_BYTES:
        raise too_large(len(body))
    try:
        data = json.loads(body)
    except RecursionError:  # [[[[...]]]] nested deeper than Python's parser goes: a 500 before
        raise RequestRefused("the body is not valid JSON (nested deeper than it can be read)") from None
    except (UnicodeDecodeError, ValueError) as error:
        reason = "a number of more digits than are read" if "digits" in str(error) else str(error)
        raise RequestRefused(f"the body is not valid JSON ({reason})") from None
    if not isinstance(data, dict):
        raise RequestRefused(f"the body must be a JSON object, got {type(data).__name__}")
    return data


def too_large(size):
    return RequestRefused(
        f"the body is {size:,} bytes or more; at most {MAX_REQUEST_BYTES:,} are read",
        status=413,
        code="request_too_large",
    )


def _typed(data, name, types, description, default=None):
    """``data[name]`` if it has one of ``types`` (JSON's true and false are not numbers), else a refusal."""
    value = data.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        raise RequestRefused(f"{name} must be {description}, got {json.dumps(value)[:80]}", param=name)
    return value


def _whole(data, name, low, high, default):
    value = _typed(data, name, (int,), "an integer", default)
    if value is not None and not low <= value <= high:
        raise RequestRefused(f"{name} must be an integer from {low} to {high:,}, got {value}", param=name)
    return value


def _prompt(data, chat):
    """The text to continue: the completion's prompt, or the chat's messages flattened."""
    if not chat:
        prompt = data.get("prompt", "")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]  # what clients send for one prompt given as a list
        if not isinstance(prompt, str):
            raise RequestRefused(
                "prompt must be one string (a list of prompts or of token ids is not taken)", param="prompt"
            )
        return prompt
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestRefused("messages must be a non-empty list of {role, content} objects", param="messages")
    texts = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # content parts: only text is read
            parts = [part.get("text") for part in content if isinstance(part, dict) and part.get("type") == "text"]
            content = "".join(part for part in parts if isinstance(part, str))
        if not isinstance(content, str):
            raise RequestRefused("each message must be an object with a text content", param="messages")
        if not isinstance(message.get("role"), str):  # read by no one here, but a client's mistake all the same
            raise RequestRefused(f"each message needs a role (a string), got {message.get('role')!r}", param="messages")
        texts.append(content)
    # A char-RNN continues text; it has no turns. The messages, in order, are the text it continues.
    return "\n".join(texts)


def _stop(data):
    stop = data.get("stop")
    if stop is None:
        return ()
    stop = (stop,) if isinstance(stop, str) else stop
    if not isinstance(stop, list | tuple) or not all(isinstance(text, str) and text for text in stop):
        raise RequestRefused("stop must be a non-empty string or a list of them", param="stop")
    if len(stop) > MAX_STOP_STRINGS:
        raise RequestRefused(f"stop takes at most {MAX_STOP_STRINGS} strings, got {len(stop)}", param="stop")
    return tuple(stop)


def _logprobs(data, chat):
    """The number of alternatives per token to return, or None."""
    if chat:
        if not _typed(data, "logprobs", (bool,), "true or false", False):
            if data.get("top_logprobs") is not None:
                raise RequestRefused("top_logprobs needs logprobs: true", param="top_logprobs")
            return None
        return _whole(data, "top_logprobs", 0, MAX_LOGPROBS, 0)
    return _whole(data, "logprobs", 0, MAX_LOGPROBS, None)


def _check_held(log_probabilities, chat):
    """An answer that is not streamed is held whole until its end: its log-probabilities are capped."""
    if log_probabilities > MAX_WHOLE_LOGPROBS:
        name = "top_logprobs" if chat else "logprobs"
        raise RequestRefused(
            f"n x max_tokens x (1 + {name}) is {log_probabilities:,} log-probabilities; an answer that is "
            f"not streamed holds at most {MAX_WHOLE_LOGPROBS:,} (stream it, or ask for fewer)",
            param=name,
        )


def _sampling_values(data):
    """textgen's own rules, with the API's names in the messages."""
    values = {}
    for api_name, field_name in _SAMPLING_NAMES.items():
        if data.get(api_name) is None:
            continue
        value = data[api_name]
        if isinstance(value, str):  # the rule would parse a string; JSON says what type it is
            raise RequestRefused(f"{api_name} must be a number, got {json.dumps(value)[:80]}", param=api_name)
        try:
            values[field_name] = rule_of(_SAMPLING_FIELDS[field_name]).check(api_name, value)
        except TextgenError as error:
            raise RequestRefused(str(error), param=api_name) from None
    if values.get("top_p") == 1:
        values["top_p"] = None  # OpenAI's default: every token
    return values


def parse_completion(data, *, chat):
    """A ``Completion`` from a request's JSON object (``chat``: /v1/chat/completions)."""
    unknown = sorted(set(data) - ALLOWED_FIELDS["chat" if chat else "completions"])
    if unknown:
        raise RequestRefused(f"unrecognized request argument: {unknown[0]}", param=unknown[0])
    model = _typed(data, "model", (str,), "a model id")
    if not model:
        raise RequestRefused("model is required: GET /v1/models lists the ids", param="model")
    for penalty in ("presence_penalty", "frequency_penalty"):
        if _typed(data, penalty, (int, float), "a number", 0) != 0:
            raise RequestRefused(f"{penalty} is not supported (only 0)", param=penalty)
    _typed(data, "user", (str,), "a string")
    options = _typed(data, "stream_options", (dict,), "an object", {})
    if set(options) - {"include_usage"}:
        raise RequestRefused("stream_options takes only include_usage", param="stream_options")
    length_name = "max_completion_tokens" if chat and data.get("max_completion_tokens") is not None else "max_tokens"
    choices = _whole(data, "n", 1, MAX_CHOICES, 1)
    values = _sampling_values(data)
    beams = values.get("beam_width", 1) > 1
    try:
        settings = SamplingConfig(
            prompt=_prompt(data, chat),
            length=_whole(data, length_name, 0, MAX_COMPLETION_TOKENS, DEFAULT_MAX_TOKENS),
            stop=_stop(data),
            num_samples=1 if beams else choices,
            num_return=choices if beams else 1,
            engine="numpy",
            **values,
        )
    except TextgenError as error:
        if isinstance(error, RequestRefused):
            raise
        raise RequestRefused(str(error).replace("num-return", "n")) from None  # n > beam_width
    stream, logprobs = _typed(data, "stream", (bool,), "true or false", False), _logprobs(data, chat)
    if logprobs is not None and not stream:
        _check_held(choices * settings.length * (1 + logprobs), chat)
    return Completion(
        model=model,
        settings=settings,
        choices=choices,
        stream=stream,
        logprobs=logprobs,
        echo=not chat and _typed(data, "echo", (bool,), "true or false", False),
        include_usage=bool(_typed(options, "include_usage", (bool,), "true or false", False)),
        chat=chat,
    )
