"""The shapes of model replies, and their validation (``ai.router`` returns these).

A server's reply is read as plain JSON (the SDK's objects are not validated: a compatible
server may send anything) and checked here: a malformed reply is an AIError with one line; a
tool call with unusable arguments is kept, with ``ToolCall.error`` saying why, so it goes back
to the model as an error and is never executed. When a server reports no usage, tokens are
estimated (characters / 4) and marked ``estimated``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from amarktai_tui.ai.errors import AIError


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one call. ``estimated``: the server sent no usage; counted as characters / 4."""

    prompt_tokens: int
    completion_tokens: int
    estimated: bool = False

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call as the model sent it. ``arguments``: the parsed JSON object, or None when
    ``error`` says why they are unusable (not JSON, not an object, a tool that was not offered):
    such a call must go back to the model as an error, never be executed."""

    id: str
    name: str
    raw_arguments: str
    arguments: dict[str, Any] | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass(frozen=True, slots=True)
class AssistantMessage:
    """The reply of ``complete``: text and/or tool calls, the model that answered, its usage."""

    content: str
    tool_calls: tuple[ToolCall, ...]
    model: str
    usage: Usage
    finish_reason: str

    def to_param(self) -> dict[str, Any]:
        """The message to append to the conversation (``role`` assistant, tool calls as sent)."""
        out: dict[str, Any] = {"role": "assistant", "content": self.content or None}
        if self.tool_calls:
            out["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.raw_arguments}}
                for c in self.tool_calls
            ]
        return out


@dataclass(frozen=True, slots=True)
class StreamResult:
    """The last item of ``stream``: the whole text, the model that answered, its usage."""

    text: str
    model: str
    usage: Usage
    finish_reason: str


def estimate_tokens(text: str) -> int:
    """A rough token count when a server reports none: characters / 4, rounded up."""
    return math.ceil(len(text) / 4)


def as_dict(obj: Any) -> dict[str, Any]:
    """An SDK object (a completion, a chunk) as the JSON the server sent. Raises AIError."""
    try:
        data = obj.to_dict(warnings=False)
    except Exception as exc:
        raise AIError(f"malformed reply ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise AIError("malformed reply (not a JSON object)")
    return data


def estimate(messages: Sequence[Mapping[str, Any]], completion: str) -> Usage:
    """Estimated usage of a call that sent ``messages`` and got ``completion`` back."""
    prompt = json.dumps(list(messages), default=str, ensure_ascii=False)
    return Usage(estimate_tokens(prompt), estimate_tokens(completion), estimated=True)


def _usage(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    p, c = data.get("prompt_tokens"), data.get("completion_tokens")
    if not isinstance(p, int) or not isinstance(c, int) or isinstance(p, bool) or isinstance(c, bool):
        return None
    return Usage(p, c)


def parse_completion(
    model: str, data: dict[str, Any], messages: Sequence[Mapping[str, Any]], offered: set[str] | None
) -> AssistantMessage:
    """Validate a chat.completion's shape; raises AIError (one line) when it is not one."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise AIError(f"{model}: malformed reply (no choices)")
    msg = choices[0].get("message")
    if not isinstance(msg, dict):
        raise AIError(f"{model}: malformed reply (no message)")
    content = msg.get("content")
    if content is not None and not isinstance(content, str):
        raise AIError(f"{model}: malformed reply (content is not text)")
    raw_calls = msg.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raise AIError(f"{model}: malformed reply (tool_calls is not a list)")
    calls = tuple(_tool_call(i, c, offered) for i, c in enumerate(raw_calls))
    if not content and not calls:
        raise AIError(f"{model}: malformed reply (neither text nor tool calls)")
    finish = choices[0].get("finish_reason")
    text = content or ""
    usage = _usage(data.get("usage")) or estimate(messages, text + "".join(c.raw_arguments for c in calls))
    return AssistantMessage(text, calls, model, usage, finish if isinstance(finish, str) else "")


def _tool_call(index: int, raw: Any, offered: set[str] | None) -> ToolCall:
    if not isinstance(raw, dict):
        return ToolCall(f"call_{index}", "", "", None, "malformed tool call (not an object)")
    given = raw.get("id")
    call_id = given if isinstance(given, str) and given else f"call_{index}"
    fn = raw.get("function")
    if raw.get("type", "function") != "function" or not isinstance(fn, dict):
        return ToolCall(call_id, "", "", None, "malformed tool call (not a function call)")
    name, args = fn.get("name"), fn.get("arguments")
    name = name if isinstance(name, str) else ""
    args = args if isinstance(args, str) else ""
    if not name:
        return ToolCall(call_id, "", args, None, "malformed tool call (no tool name)")
    if offered is not None and name not in offered:
        return ToolCall(call_id, name, args, None, f"unknown tool {name!r}")
    try:
        parsed = json.loads(args or "{}")
    except json.JSONDecodeError as exc:
        return ToolCall(
            call_id, name, args, None, f"arguments are not valid JSON: {exc.msg} at char {exc.pos}"
        )
    if not isinstance(parsed, dict):
        return ToolCall(call_id, name, args, None, "arguments must be a JSON object")
    return ToolCall(call_id, name, args, parsed)


def parse_chunk(model: str, data: dict[str, Any]) -> tuple[str, Usage | None, str]:
    """(text delta, usage if this chunk carries it, finish reason) of a chat.completion.chunk."""
    choices = data.get("choices")
    if choices is None:
        choices = []
    if not isinstance(choices, list):
        raise AIError(f"{model}: malformed stream chunk (choices is not a list)")
    text, finish = "", ""
    for choice in choices:
        if not isinstance(choice, dict):
            raise AIError(f"{model}: malformed stream chunk")
        delta = choice.get("delta") or {}
        piece = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(piece, str):
            text += piece
        if isinstance(choice.get("finish_reason"), str):
            finish = choice["finish_reason"]
    return text, _usage(data.get("usage")), finish
