"""Answer checking and mode keys for free-form (GSM8K- and MATH-style) reasoning.

Checking: ``math-verify`` (the verifier most public RLVR recipes use: LaTeX, fractions,
units, sets, symbolic equality) when it is installed, otherwise a dependency-free
comparison (numbers numerically, anything else as normalised text). ``verifier`` selects:
``auto`` (math-verify when installed), ``math_verify`` (required), ``builtin``.

Mode keys (``mode_key`` parameter of the free-form tasks):

- ``text``: the normalised completion text. Every sampled text differs, so almost every
  correct completion is its own mode; use it only for short, structured answers.
- ``answer``: the final answer, canonicalised. For a correct completion it is the gold
  answer, so each problem has at most one correct mode: the key measures the
  distribution of *final answers* (``Verdict.answer`` carries it for wrong completions
  too), not of solution methods.
- ``solution_path``: the multiset of intermediate results the completion writes as
  equations (``... = 12``, ``<<3*4=12>>``), numbers canonicalised and sorted. Two
  solutions that compute the same values in another order or wording share a key; ones
  through different intermediate values differ. Limits: results written in words or
  without an ``=`` are not seen; a method that happens to produce the same intermediate
  values as another is counted as the same path; a completion with no equation gets
  the key ``no-equations:<answer>``.
"""

from __future__ import annotations

import re
import threading
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from workbench.errors import ConfigError

VERIFIERS = ("auto", "math_verify", "builtin")
MODE_KEYS = ("text", "answer", "solution_path")

# A number as a GSM8K answer writes it: a minus sign only when it does not follow a word
# ("3-4" is a range, not -4), commas only as thousands separators ("1,2,3" is three numbers).
NUMBER = re.compile(r"(?:(?<![\w)])-)?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
# "expression = number": the number right after an equals sign (calculator annotations included)
_RESULT = re.compile(r"=\s*\$?\s*(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)")
_BOXED = "\\boxed"


@lru_cache(maxsize=1)
def math_verify_available() -> bool:
    try:
        import math_verify  # noqa: F401
    except ImportError:
        return False
    return True


def check_choice(verifier: str, mode_key: str, task: str) -> None:
    """ConfigError for an unknown verifier / mode key, or math_verify asked for but missing."""
    if verifier not in VERIFIERS:
        raise ConfigError(f"task {task!r}: verifier = {verifier!r} is not one of {', '.join(VERIFIERS)}")
    if mode_key not in MODE_KEYS:
        raise ConfigError(f"task {task!r}: mode_key = {mode_key!r} is not one of {', '.join(MODE_KEYS)}")
    if verifier == "math_verify" and not math_verify_available():
        raise ConfigError(f"task {task!r}: verifier = 'math_verify' but the math-verify package is not installed; "
                          "pip install 'rlvr-workbench[math]' (or math-verify), or use verifier='builtin'")


def use_math_verify(verifier: str) -> bool:
    return verifier == "math_verify" or (verifier == "auto" and math_verify_available())


def canonical_number(text: str) -> str | None:
    """``"$1,234.50"`` -> ``"1234.5"``; None if ``text`` is not a number."""
    text = text.strip().rstrip(".")
    if not NUMBER.fullmatch(text):
        return None
    try:
        d = Decimal(text.replace(",", "").replace("$", ""))
    except InvalidOperation:
        return None
    return str(int(d)) if d == d.to_integral_value() else format(d.normalize(), "f")


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (braces balanced), or None."""
    start = text.rfind(_BOXED)
    while start != -1:
        i = start + len(_BOXED)
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            depth, j = 0, i
            while j < len(text):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1:j].strip()
                j += 1
            return None
        start = text.rfind(_BOXED, 0, start)
    return None


def normalize_latex(text: str) -> str:
    """A dependency-free canonical form of a short LaTeX answer: no spaces, ``\\left``/``\\right``,
    ``\\dfrac``/``\\tfrac`` -> ``\\frac``, no surrounding ``$`` or trailing period, a number
    canonicalised, ``\\frac{a}{b}`` of integers as ``a/b``."""
    t = text.strip().strip("$").rstrip(".").strip()
    for a, b in (("\\left", ""), ("\\right", ""), ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\!", ""),
                 ("\\,", ""), ("\\;", ""), ("\\ ", ""), ("^{\\circ}", ""), ("^\\circ", ""), ("\\%", ""), ("%", "")):
        t = t.replace(a, b)
    t = re.sub(r"\\text\{([^{}]*)\}", r"\1", t)
    t = re.sub(r"\s+", "", t)
    num = canonical_number(t)
    if num is not None:
        return num
    m = re.fullmatch(r"(-?)\\frac\{?(\d+)\}?\{?(\d+)\}?", t)
    if m:
        from fractions import Fraction

        f = Fraction(int(m.group(2)), int(m.group(3))) * (-1 if m.group(1) else 1)
        return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"
    m = re.fullmatch(r"(-?\d+)/(\d+)", t)
    if m:
        from fractions import Fraction

        f = Fraction(int(m.group(1)), int(m.group(2)))
        return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"
    return t


def builtin_equal(pred: str, gold: str) -> bool:
    """Numbers within 1e-6 (decimals and integer fractions alike), else equal normalised text."""
    a, b = normalize_latex(pred), normalize_latex(gold)
    fa, fb = _as_float(a), _as_float(b)
    if fa is not None and fb is not None:
        return abs(fa - fb) <= 1e-6 * max(1.0, abs(fb))
    return a == b


def _as_float(t: str) -> float | None:
    try:
        if "/" in t:
            n, d = t.split("/", 1)
            return int(n) / int(d)
        return float(t)
    except (ValueError, ZeroDivisionError):
        return None


def math_verify_equal(completion: str, gold: str) -> bool | None:
    """math-verify's verdict on the completion's answer against ``gold``; None when it finds
    no answer in the completion."""
    from math_verify import parse, verify

    main = threading.current_thread() is threading.main_thread()
    kw = {} if main else {"parsing_timeout": None}  # its time limit uses signals: main thread only
    gold_text = gold if ("$" in gold or _BOXED in gold) else f"${gold}$"
    g = parse(gold_text, **kw)
    p = parse(completion, **kw)
    if not p:
        return None
    if not g:
        return False
    return bool(verify(g, p, **({} if main else {"timeout_seconds": None})))


def equation_results(text: str) -> list[str]:
    """Canonical numbers written right after an ``=`` (calculator annotations included)."""
    out = []
    for m in _RESULT.finditer(text):
        n = canonical_number(m.group(1))
        if n is not None:
            out.append(n)
    return out


def solution_path_key(text: str, answer: str | None) -> str:
    """The sorted multiset of intermediate results, e.g. ``"12|30|42"``."""
    results = sorted(equation_results(text), key=lambda s: (float(s), s))
    if not results:
        return f"no-equations:{answer}"
    return "|".join(results)


def mode_key_of(kind: str, text: str, answer: str | None) -> str | None:
    from workbench.tasks.base import normalize_text

    if kind == "answer":
        return answer
    if kind == "solution_path":
        return solution_path_key(text, answer)
    return normalize_text(text)
