"""The JSON textgen writes back, in the shapes of OpenAI's API (what its clients parse).

    /v1/completions        "text_completion": choices[i].text, logprobs as
                           {tokens, token_logprobs, top_logprobs, text_offset}
    /v1/chat/completions   "chat.completion": choices[i].message.content, logprobs as
                           {content: [{token, logprob, bytes, top_logprobs}]};
                           streamed as "chat.completion.chunk" with choices[i].delta
    every refusal          {"error": {"message", "type", "param", "code"}}

``Answer`` follows one request's events (stream_sink.py) and makes either the
chunks of a stream or the whole response at the end.
"""

import time
import uuid


def error_body(message, *, kind="invalid_request_error", param=None, code=None):
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _chat_logprobs(entries):
    def one(token, log_probability):
        return {"token": token, "logprob": log_probability, "bytes": list(token.encode("utf-8", "replace"))}

    return {"content": [one(token, lp) | {"top_logprobs": [one(*alt) for alt in top]} for token, lp, top in entries]}


class Answer:
    """One request's reply, built from its events."""

    def __init__(self, completion, model_id, prompt_tokens):
        self.completion, self.model_id, self.prompt_tokens = completion, model_id, prompt_tokens
        self.chat = completion.chat
        self.id = ("chatcmpl-" if self.chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        count = completion.choices
        self.texts = [[] for _ in range(count)]
        self.entries = [[] for _ in range(count)]
        self.offsets = [len(completion.settings.prompt) if completion.echo else 0 for _ in range(count)]
        self.finish_reasons = [None] * count
        self.completion_tokens = 0
        self.started = [False] * count  # a chat stream's first delta of a choice carries the role

    def _logprobs(self, index, entries):
        """A choice's logprobs object for ``entries`` (None where the request asked for none)."""
        if self.completion.logprobs is None:
            return None
        if self.chat:
            return _chat_logprobs(entries)
        offsets = []
        for token, _, _ in entries:
            offsets.append(self.offsets[index])
            self.offsets[index] += len(token)
        return {
            "tokens": [token for token, _, _ in entries],
            "token_logprobs": [lp for _, lp, _ in entries],
            "top_logprobs": [dict(top) for _, _, top in entries],
            "text_offset": offsets,
        }

    def _envelope(self, kind, choices):
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model_id, "choices": choices}

    def usage(self):
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    def take(self, events):
        """Record a batch of events; returns the chunks to stream for them, one per choice they touch
        (its new text and entries together, with its finish_reason if it ended)."""
        touched = {}  # choice index -> [texts, entries, reason], in the order the choices appear
        for event in events:
            kind, index = event[0], event[1]
            texts, entries, _ = touched.setdefault(index, [[], [], None])
            if kind == "end":
                self.finish_reasons[index] = touched[index][2] = event[2]
                self.completion_tokens += event[3]
            else:
                texts.append(event[2])
                entries += event[3]
        chunks = []
        for index, (texts, entries, reason) in touched.items():
            text = "".join(texts)
            if not self.completion.stream:  # kept for whole(); a stream has sent them and keeps none
                self.texts[index].append(text)
                self.entries[index] += entries
            chunks.append(self.chunk(index, text, entries, reason))
        return chunks

    def chunk(self, index, text, entries, reason):
        if self.completion.echo and not self.started[index]:
            text = self.completion.settings.prompt + text
        logprobs = self._logprobs(index, entries) if entries or reason is None else None
        if not self.chat:
            self.started[index] = True
            choice = {"index": index, "text": text, "finish_reason": reason, "logprobs": logprobs}
            return self._envelope("text_completion", [choice])
        delta = {} if reason is not None and not text else {"content": text}
        if not self.started[index]:
            delta = {"role": "assistant", **delta}
            self.started[index] = True
        choice = {"index": index, "delta": delta, "finish_reason": reason, "logprobs": logprobs}
        return self._envelope("chat.completion.chunk", [choice])

    def usage_chunk(self):
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return self._envelope(kind, []) | {"usage": self.usage()}

    def whole(self):
        """The complete response, once every choice has ended."""
        self.offsets = [len(self.completion.settings.prompt) if self.completion.echo else 0 for _ in self.texts]
        choices = []
        for index, pieces in enumerate(self.texts):
            text = "".join(pieces)
            logprobs = self._logprobs(index, self.entries[index])
            if self.chat:
                message = {"role": "assistant", "content": text}
                choices.append({"index": index, "message": message, "finish_reason": self.finish_reasons[index]})
                choices[-1]["logprobs"] = logprobs
            else:
                text = (self.completion.settings.prompt if self.completion.echo else "") + text
                choices.append(
                    {"index": index, "text": text, "finish_reason": self.finish_reasons[index], "logprobs": logprobs}
                )
        kind = "chat.completion" if self.chat else "text_completion"
        return self._envelope(kind, choices) | {"usage": self.usage()}
