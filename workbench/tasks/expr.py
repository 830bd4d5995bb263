"""Arithmetic expressions for Countdown: safe parsing, exact evaluation, canonical form.

The canonical form decides when two correct answers are *the same solution*.  A sum is a
multiset of signed terms (so ``a-(b-c)`` equals ``a-b+c``), a product a numerator and a
denominator multiset of factors (so ``a/(b/c)`` equals ``a*c/b``); operands are sorted.
The canonical key is itself a valid expression with minimal parentheses: positive terms
first, then negative ones; numerator factors first, then ``/`` each denominator factor —
an order that keeps every intermediate an integer whenever the value is one.

It does not apply distributivity or sign algebra across a product (``a-b*(c-d)`` and
``a+b*(d-c)`` are different keys); those are different derivations, not reorderings.
Parsing goes through ``ast`` with a whitelist — never ``eval``.
"""

from __future__ import annotations

import ast
import re
from typing import NamedTuple

MAX_CHARS = 256  # longer completions are not answers; also bounds parser recursion
_ALLOWED = re.compile(r"^[\d\s+\-*/()]+$")


class Expr(NamedTuple):
    """A canonical node.  kind 'n': leaf; '+': a/b = positive/negative term keys;
    '*': a/b = numerator/denominator factor keys (sums parenthesised)."""

    key: str
    value: int | None  # None: a step of a parsed completion was inexact or divided by zero
    kind: str
    a: tuple[str, ...] = ()
    b: tuple[str, ...] = ()


def leaf(n: int) -> Expr:
    return Expr(str(n), n, "n")


def _as_sum(x: Expr) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return (x.a, x.b) if x.kind == "+" else ((x.key,), ())


def _as_product(x: Expr) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if x.kind == "*":
        return x.a, x.b
    return (f"({x.key})",) if x.kind == "+" else (x.key,), ()


def _order(s: str) -> tuple[int, str]:
    """Operand order: shorter first, so numbers read in numeric order (4+10, not 10+4)."""
    return len(s), s


def combine(op: str, x: Expr, y: Expr, value: int | None) -> Expr:
    """The canonical node for ``x op y`` (flattened, operands sorted); ``value`` is given."""
    if op in "+-":
        (xp, xn), (yp, yn) = _as_sum(x), _as_sum(y)
        pos, neg = (xp + yp, xn + yn) if op == "+" else (xp + yn, xn + yp)
        pos, neg = tuple(sorted(pos, key=_order)), tuple(sorted(neg, key=_order))
        return Expr("+".join(pos) + "".join("-" + t for t in neg), value, "+", pos, neg)
    (xu, xd), (yu, yd) = _as_product(x), _as_product(y)
    num, den = (xu + yu, xd + yd) if op == "*" else (xu + yd, xd + yu)
    num, den = tuple(sorted(num, key=_order)), tuple(sorted(den, key=_order))
    return Expr("*".join(num) + "".join("/" + f for f in den), value, "*", num, den)


class Parsed(NamedTuple):
    """A parsed completion: its canonical key, the numbers it uses, and its exact value
    (None when some intermediate is not an integer or divides by zero)."""

    key: str
    leaves: list[int]
    value: int | None


_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def parse(text: str) -> Parsed | None:
    """Parse ``text`` as integers, + - * / and parentheses; None if it is anything else."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    if not text or len(text) > MAX_CHARS or not _ALLOWED.match(text):
        return None
    try:
        tree = ast.parse(text, mode="eval").body
        leaves: list[int] = []
        node = _canon(tree, leaves)
    except (SyntaxError, ValueError, RecursionError, MemoryError, _NotArithmetic):
        return None
    return Parsed(node.key, leaves, node.value)


class _NotArithmetic(Exception):
    pass


def _canon(t: ast.AST, leaves: list[int]) -> Expr:
    """Canonical node of an AST, evaluated exactly in the order written."""
    if isinstance(t, ast.Constant) and type(t.value) is int:
        leaves.append(t.value)
        return leaf(t.value)
    if isinstance(t, ast.BinOp) and type(t.op) in _OPS:
        op = _OPS[type(t.op)]
        x, y = _canon(t.left, leaves), _canon(t.right, leaves)
        return combine(op, x, y, _apply(op, x.value, y.value))
    raise _NotArithmetic


def _apply(op: str, u: int | None, v: int | None) -> int | None:
    if u is None or v is None:
        return None
    if op == "+":
        return u + v
    if op == "-":
        return u - v
    if op == "*":
        return u * v
    return u // v if v != 0 and u % v == 0 else None


def enumerate_exprs(numbers: tuple[int, ...], memo: dict | None = None) -> dict[str, Expr]:
    """All canonical expressions using exactly the multiset ``numbers``, every node's value
    a positive integer (the classic Countdown rule, which also rules out ``x*0`` padding).

    Memoised over sub-multisets: pass one ``memo`` dict to share work across calls.
    """
    memo = {} if memo is None else memo
    nums = tuple(sorted(numbers))
    if nums in memo:
        return memo[nums]
    if len(nums) == 1:
        memo[nums] = {str(nums[0]): leaf(nums[0])}
        return memo[nums]
    out: dict[str, Expr] = {}
    k = len(nums)
    seen: set[tuple[int, ...]] = set()
    for mask in range(1, 1 << k, 2):  # bit 0 always in A: each unordered split once
        if mask == (1 << k) - 1:
            continue
        part_a = tuple(nums[i] for i in range(k) if mask >> i & 1)
        if part_a in seen:  # repeated numbers give the same split twice
            continue
        seen.add(part_a)
        part_b = tuple(nums[i] for i in range(k) if not mask >> i & 1)
        xs = list(enumerate_exprs(part_a, memo).values())
        ys = list(enumerate_exprs(part_b, memo).values())
        for x in xs:
            for y in ys:
                u, v = x.value, y.value
                cands = [("+", x, y, u + v), ("*", x, y, u * v)]
                if u > v:
                    cands.append(("-", x, y, u - v))
                elif v > u:
                    cands.append(("-", y, x, v - u))
                if u % v == 0:
                    cands.append(("/", x, y, u // v))
                if v % u == 0:
                    cands.append(("/", y, x, v // u))
                for op, p, q, val in cands:
                    e = combine(op, p, q, val)
                    out.setdefault(e.key, e)
    memo[nums] = out
    return out


def sub_multisets(numbers: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Distinct non-empty sub-multisets of ``numbers`` (sorted tuples)."""
    nums = tuple(sorted(numbers))
    return sorted({tuple(nums[i] for i in range(len(nums)) if m >> i & 1) for m in range(1, 1 << len(nums))})


def all_solutions(numbers: tuple[int, ...], memo: dict | None = None) -> dict[int, list[str]]:
    """Canonical keys of every positive-intermediate expression over any sub-multiset, by value."""
    memo = {} if memo is None else memo
    by_value: dict[int, list[str]] = {}
    for sub in sub_multisets(numbers):
        for e in enumerate_exprs(sub, memo).values():
            by_value.setdefault(e.value, []).append(e.key)
    return by_value
