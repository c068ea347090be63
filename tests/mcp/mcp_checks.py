"""What both transports' tests share: tiny models, the expected tools, a schema check."""

from __future__ import annotations

from typing import Any

from mcp.types import CallToolResult, Tool

TOOLS = {
    "generate",
    "chat",
    "list_models",
    "switch_model",
    "health_check",
    "plan_model",
    "fit_models",
    "memory_status",
}
LOAD_SETTINGS = {"n_ctx": 256, "n_batch": 64, "n_ubatch": 64, "seed": 1}


def check_schemas(tools: list[Tool]) -> None:
    """Every tool is described, takes an object, and describes each of its arguments."""
    assert {tool.name for tool in tools} == TOOLS
    for tool in tools:
        assert tool.description, tool.name
        assert tool.input_schema["type"] == "object", tool.name
        assert tool.output_schema is not None and tool.output_schema["type"] == "object"
        for name, prop in tool.input_schema.get("properties", {}).items():
            assert prop.get("description"), f"{tool.name}.{name} has no description"
    by_name = {tool.name: tool for tool in tools}
    assert by_name["generate"].input_schema["required"] == ["prompt"]
    assert by_name["chat"].input_schema["required"] == ["messages"]
    assert set(by_name["switch_model"].input_schema["required"]) == {"alias", "target"}
    turn = by_name["chat"].input_schema["$defs"]["Turn"]
    assert turn["properties"]["role"]["enum"] == ["system", "user", "assistant"]


def structured(result: CallToolResult) -> dict[str, Any]:
    """The result of a call that must have worked."""
    assert not result.is_error, error_text(result)
    assert result.structured_content is not None
    return result.structured_content


def error_text(result: CallToolResult) -> str:
    texts = [block.text for block in result.content if block.type == "text"]
    return "\n".join(texts)
