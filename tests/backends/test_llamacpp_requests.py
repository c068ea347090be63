"""What llama-cpp-python's named chat formats get: every turn, as text they keep."""

from __future__ import annotations

import pytest

from yoyu.backends.llamacpp_requests import chat_for_engine, whole_from_stream
from yoyu.backends.protocol import ChatMessage, ChatRequest

CALL = {"id": "c1", "type": "function", "function": {"name": "mul", "arguments": '{"a":6}'}}
AGENT_TURN = (
    ChatMessage("developer", "Use the tool."),
    ChatMessage("user", [{"type": "text", "text": "6 times 7?"}]),
    ChatMessage("assistant", None, {"tool_calls": [CALL]}),
    ChatMessage("tool", "42", {"tool_call_id": "c1", "name": "mul"}),
)


def shaped(chat_format: str | None, engine: str = "llama-cpp-python") -> list[tuple[str, object]]:
    request = chat_for_engine(ChatRequest("m", AGENT_TURN), engine, chat_format)  # type: ignore[arg-type]
    return [(message.role, message.content) for message in request.messages]


def test_gemma_gets_the_system_text_in_the_first_user_turn_and_the_tool_turns_as_text() -> None:
    assert shaped("gemma") == [
        ("user", "Use the tool.\n\n6 times 7?"),
        ("assistant", '[called mul({"a":6})]'),
        ("user", "[mul returned] 42"),
    ]


def test_a_format_with_a_system_turn_keeps_it() -> None:
    assert shaped("chatml")[0] == ("system", "Use the tool.")
    assert [role for role, _ in shaped("chatml")] == ["system", "user", "assistant", "user"]


@pytest.mark.parametrize(
    ("chat_format", "engine"),
    [(None, "llama-cpp-python"), ("chatml-function-calling", "llama-cpp-python"),
     (None, "llama-server")],
)  # fmt: skip
def test_a_files_template_and_a_tool_handler_get_the_turns_as_sent(
    chat_format: str | None, engine: str
) -> None:
    roles = [role for role, _ in shaped(chat_format, engine)]
    assert roles[1:] == ["user", "assistant", "tool"]
    assert shaped(chat_format, engine)[2] == ("assistant", None)


@pytest.mark.parametrize(
    ("engine", "extra", "streamed"),
    [("llama-cpp-python", {}, True), ("llama-cpp-python", {"logprobs": True}, True),
     ("llama-server", {}, True), ("llama-server", {"n": 3}, False),
     ("llama-server", {"logprobs": True, "top_logprobs": 2}, False)],
)  # fmt: skip
def test_whole_answers_are_streamed_unless_the_fold_would_lose_something(
    engine: str, extra: dict[str, object], streamed: bool
) -> None:
    assert whole_from_stream(engine, extra) is streamed  # type: ignore[arg-type]


def test_llama_servers_builtin_templates_get_text_turns_and_no_tools() -> None:
    request = ChatRequest("m", AGENT_TURN, extra={"tools": [{"type": "function"}], "seed": 1})
    shaped_request = chat_for_engine(request, "llama-server", "gemma")
    assert [m.role for m in shaped_request.messages] == ["system", "user", "assistant", "user"]
    assert shaped_request.messages[-1].content == "[mul returned] 42"
    assert shaped_request.extra == {"seed": 1}
