"""What yoyu's llama-cpp-python server puts right, checked on the library itself."""

from __future__ import annotations

import pytest

from yoyu.backends.llamacpp_python_server import (
    close_previous_sampler,
    split_outputs_flag,
    template_problem,
)

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_a_template_llama_cpp_python_renders_has_no_problem() -> None:
    assert template_problem("llama-cpp-python", CHATML) is None
    assert template_problem("llama-cpp-python", None) is None


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{% if %}", "TemplateSyntaxError"),
        ("{{ raise_exception('only user/assistant roles') }}", "only user/assistant roles"),
        ("{{ messages | no_such_filter }}", "no_such_filter"),
    ],
)
def test_a_template_it_cannot_render_is_named_in_one_line(template: str, fragment: str) -> None:
    problem = template_problem("llama-cpp-python", template)
    assert problem is not None and fragment in problem and "\n" not in problem


def test_other_engines_render_with_their_own_engine() -> None:
    assert template_problem("llama-server", "{% if %}") is None


def test_the_outputs_flag_is_taken_out_for_the_context() -> None:
    argv = ["server", "--model", "m.gguf", "--n_outputs_max", "4", "--port", "1"]
    assert split_outputs_flag(argv) == (
        ["server", "--model", "m.gguf", "--port", "1"],
        {"n_outputs_max": 4},
    )
    assert split_outputs_flag(["server"]) == (["server"], {})
    with pytest.raises(SystemExit, match="whole number"):
        split_outputs_flag(["server", "--n_outputs_max", "x"])


def test_the_previous_sampler_is_closed_when_the_next_is_made() -> None:
    closed: list[str] = []

    class Sampler:
        def __init__(self, name: str) -> None:
            self.name = name

        def close(self) -> None:
            closed.append(self.name)

    class Model:
        _sampler: Sampler | None = None

        def _init_sampler(self, name: str) -> Sampler:
            return Sampler(name)

    init = close_previous_sampler(Model._init_sampler)
    model = Model()
    model._sampler = init(model, "first")
    model._sampler = init(model, "second")
    assert closed == ["first"]
