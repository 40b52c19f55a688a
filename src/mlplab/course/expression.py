"""f(x) as a user writes it: an expression in x, parsed with ``ast`` and evaluated by walking the tree (never
``eval``): numbers, x, + − * / **, unary minus and parentheses. Derivatives come from torch autograd in
float64."""

from __future__ import annotations

import ast
import operator
from typing import Callable

import torch

from ..errors import ConfigError

Function = Callable[[torch.Tensor], torch.Tensor]
ALLOWED = "numbers, x, + - * / **, unary minus and parentheses"
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}


def _check(node: ast.AST, text: str) -> None:
    """Reject anything but the allowed node types, naming the first offender."""
    def refuse(what: str) -> None:
        raise ConfigError(f"function={text!r}: {what} is not allowed: use {ALLOWED}")

    if isinstance(node, ast.Expression):
        _check(node.body, text)
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            if isinstance(node.op, ast.BitXor):
                raise ConfigError(f"function={text!r}: '^' is not a power here: write powers as **, e.g. x**2")
            refuse(f"the operator {type(node.op).__name__}")
        _check(node.left, text)
        _check(node.right, text)
    elif isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY:
            refuse(f"the operator {type(node.op).__name__}")
        _check(node.operand, text)
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            refuse(f"the constant {node.value!r}")
    elif isinstance(node, ast.Name):
        if node.id != "x":
            refuse(f"the name {node.id!r}")
    elif isinstance(node, ast.Call):
        refuse(f"a call ({ast.unparse(node.func)})")
    else:
        refuse(f"{type(node).__name__} ({ast.unparse(node)})")


def parse_function(text: str) -> Function:
    """``"x**4/4 - 3*x**3 + 7*x - 5"`` → a function of a float64 tensor; ConfigError names what is not allowed."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise ConfigError(f"function={text!r} is not an expression ({error.msg}): use {ALLOWED}") from None
    _check(tree, text)
    if not any(isinstance(node, ast.Name) for node in ast.walk(tree)):
        raise ConfigError(f"function={text!r} does not depend on x")

    def evaluate(node: ast.AST, x: torch.Tensor) -> torch.Tensor:
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](evaluate(node.left, x), evaluate(node.right, x))
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](evaluate(node.operand, x))
        if isinstance(node, ast.Name):
            return x
        # A tensor constant: "9**9**9" overflows to inf instead of building a huge Python int.
        return torch.tensor(float(node.value), dtype=torch.float64)

    try:
        float(evaluate(tree.body, torch.tensor(0.0, dtype=torch.float64)))  # e.g. an integer literal too big for a float
    except OverflowError:
        raise ConfigError(f"function={text!r} holds a number too large for a float") from None
    return lambda x: evaluate(tree.body, x)


def derivatives(f: Function, x: float, order: int = 1) -> list[float]:
    """[f'(x)] or [f'(x), f''(x)] by autograd in float64."""
    point = torch.tensor(float(x), dtype=torch.float64, requires_grad=True)
    (first,) = torch.autograd.grad(f(point), point, create_graph=order > 1)
    if order == 1:
        return [first.item()]
    (second,) = torch.autograd.grad(first, point) if first.requires_grad else (torch.zeros(()),)
    return [first.item(), second.item()]


def derivative(f: Function, x: float) -> float:
    return derivatives(f, x)[0]


def value(f: Function, x: float) -> float:
    return f(torch.tensor(float(x), dtype=torch.float64)).item()
