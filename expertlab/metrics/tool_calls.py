"""Function-call output + target call -> 1.0 when both parse to the same calls (BFCL's AST checking, exact values).

Outputs are in BFCL's prompting format, `[func_name(arg1=value1, arg2=value2), ...]`; as BFCL's own
decoder does, a missing outer bracket is added before parsing. Calls match as a multiset (BFCL's parallel
calls are order-free); two calls match when their (dotted) names are equal and their keyword arguments
have the same names and the same literal values, of the same types, in any order. An output that does
not parse to such a list (prose, a positional argument, a value that is not a literal, a repeated
keyword) scores 0.0.
"""

from __future__ import annotations

import ast
from typing import Any

from expertlab.metrics import Row, metric

Call = tuple[str, dict[str, Any]]
# what ast.parse and ast.literal_eval raise on text that is not Python, or not a literal
_UNPARSABLE = (SyntaxError, ValueError, TypeError, OverflowError, MemoryError, RecursionError)


def _dotted(node: ast.expr) -> str | None:
    """`math.factorial` for an attribute chain of names, `f` for a name; None for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        owner = _dotted(node.value)
        return None if owner is None else f"{owner}.{node.attr}"
    return None


def parse_calls(text: str) -> list[Call] | None:
    """The (name, keyword arguments) of each call in `[f(a=1), g(b="x")]`, or None when `text` is not such a list."""
    text = text.strip()
    text = ("" if text.startswith("[") else "[") + text + ("" if text.endswith("]") else "]")
    try:
        tree = ast.parse(text, mode="eval")
    except _UNPARSABLE:
        return None
    if not isinstance(tree.body, ast.List) or not tree.body.elts:
        return None
    calls = []
    for node in tree.body.elts:
        name = _dotted(node.func) if isinstance(node, ast.Call) else None
        if name is None or node.args:
            return None
        arguments: dict[str, Any] = {}
        for keyword in node.keywords:
            if keyword.arg is None or keyword.arg in arguments:  # **kwargs, or a keyword given twice
                return None
            try:
                arguments[keyword.arg] = ast.literal_eval(keyword.value)
            except _UNPARSABLE:
                return None
        calls.append((name, arguments))
    return calls


def _same_value(a: Any, b: Any) -> bool:
    """Equal and of the same type all the way down: 1, 1.0, True and "1" are four different values."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_value(a[key], b[key]) for key in a)
    return a == b


def _same_call(a: Call, b: Call) -> bool:
    return a[0] == b[0] and a[1].keys() == b[1].keys() and all(_same_value(a[1][k], b[1][k]) for k in a[1])


def calls_match(output: str, target: str) -> bool:
    """Whether `output` makes exactly the calls `target` makes, in any order; a target that does not parse raises."""
    expected = parse_calls(target)
    if expected is None:
        raise ValueError(f"target {target!r} is not a list of function calls")
    made = parse_calls(output)
    if made is None or len(made) != len(expected):
        return False
    unmatched = list(made)
    for call in expected:
        match = next((index for index, other in enumerate(unmatched) if _same_call(call, other)), None)
        if match is None:
            return False
        unmatched.pop(match)
    return True


@metric("ast_match")
def ast_match(output: str, item: Row) -> float:
    """1.0 when the output parses to the target's function calls (names, argument names and values); else 0.0."""
    return float(calls_match(output, item["target"]))
