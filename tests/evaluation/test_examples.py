"""The code examples in the evaluation package's docstrings run as written."""

from __future__ import annotations

import textwrap

import pytest
from torch import nn

import robustai.evaluation.suite
from robustai.data import DataBundle


def docstring_example(doc: str) -> str:
    """The indented block after the first line ending in ``::``."""
    block = doc.split("::\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith(" "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


def test_evaluate_model_example(
    digits: DataBundle, digits_model: nn.Module, capsys: pytest.CaptureFixture[str]
) -> None:
    code = docstring_example(robustai.evaluation.suite.__doc__ or "")
    assert "evaluate_model(" in code
    x, y = digits.eval.x[:40], digits.eval.y[:40]
    exec(code, {"model": digits_model, "x": x, "y": y})
    printed = capsys.readouterr().out
    assert "passed" in printed  # the sanity summary, e.g. "7 passed, 0 warned, 0 failed"
