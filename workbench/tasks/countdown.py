"""Countdown: reach a target with + - * / and parentheses, using each given number at most once.

Answers compose (sub-expressions are reusable pieces), so a small model may generalise to
unseen problems, and a problem usually has many canonically different solutions.

Problems: difficulty 0/1/2 = 3/4/5 distinct numbers drawn from 2..20, and a target in
10..100 that is not one of the numbers and has at least 2 canonical solutions (most have
many more).  1 is left out because ``x*1`` and ``x/1`` would add trivial "modes", and
repeated numbers because ``x/x`` would do the same.  Targets are drawn with weight
proportional to their solution count.  Three numbers rarely reach a target two ways, so
difficulty-0 problems mostly have exactly 2 or 3 solutions; 4 and 5 numbers have many.  Verification accepts any sub-multiset
of the numbers, any integer intermediates (negative ones included) and exact division only.
"""

from __future__ import annotations

import random
from collections import Counter

from workbench.errors import ConfigError
from workbench.tasks.base import UNPARSED, Problem, Task, Verdict, graded, proportional_counts
from workbench.tasks.expr import all_solutions, parse

NUMBER_RANGE = (2, 20)
TARGET_RANGE = (10, 100)
N_NUMBERS = {0: 3, 1: 4, 2: 5}
MIX = {0: 0.4, 1: 0.4, 2: 0.2}  # difficulty shares for difficulty=None and the splits
SPLIT_SIZES = {"train": 512, "eval": 64}
MIN_SOLUTIONS = 2


def answer_tag(text: str) -> str | None:
    """The content of the last ``<answer>...</answer>``; an equation's left side when it
    ends in ``= target`` ("(3+5)*2 = 16" -> "(3+5)*2"). None without a closed tag."""
    end = text.rfind("</answer>")
    start = text.rfind("<answer>", 0, end) if end != -1 else -1
    if start == -1:
        return None
    inner = text[start + len("<answer>"):end].strip()
    return inner.split("=", 1)[0].strip() if "=" in inner else inner


def make_problem(numbers: list[int], target: int, difficulty: int) -> Problem:
    nums = sorted(numbers)
    pid = f"cd-{'_'.join(map(str, nums))}-{target}"
    return Problem(id=pid, data={"numbers": nums, "target": target}, difficulty=difficulty)


def draw_problem(rng: random.Random, difficulty: int) -> Problem:
    """Draw numbers until some target in range has at least ``MIN_SOLUTIONS`` solutions."""
    lo, hi = NUMBER_RANGE
    while True:
        nums = sorted(rng.sample(range(lo, hi + 1), N_NUMBERS[difficulty]))
        by_value = all_solutions(tuple(nums))
        counts = {t: len(by_value.get(t, ())) for t in range(TARGET_RANGE[0], TARGET_RANGE[1] + 1) if t not in nums}
        eligible = [t for t, c in counts.items() if c >= MIN_SOLUTIONS]
        if eligible:  # weighted by solution count, so most problems have several modes
            target = rng.choices(eligible, weights=[counts[t] for t in eligible])[0]
            return make_problem(nums, target, difficulty)


class Countdown(Task):
    """Mode key: the canonical expression (see ``workbench.tasks.expr``).

    Parameters:

    style: ``compact`` (the embedded model's prompt, the bare expression as the answer) or
        ``chat`` (the prompt of the public "zero" reproductions for real models: reason in
        ``<think></think>``, answer inside ``<answer></answer>``; only the last answer tag
        is graded, and a completion without one is unparsed).
    format_reward: with ``style="chat"``, the reward of a well-formed answer (tags present,
        a valid expression) that is wrong; the public recipes use 0.1 (choice). 0 keeps
        rewards 0/1.
    """

    name = "countdown"
    max_new_tokens = 32

    def __init__(self, style: str = "compact", format_reward: float = 0.0) -> None:
        super().__init__()
        if style not in ("compact", "chat"):
            raise ConfigError(f"countdown style = {style!r} is not allowed: expected 'compact' or 'chat'")
        if not 0.0 <= format_reward < 1.0:
            raise ConfigError(f"countdown format_reward = {format_reward!r} is not allowed: expected a value in [0, 1)")
        self.style, self.format_reward = style, float(format_reward)
        self.params = {"style": style, "format_reward": self.format_reward}
        if style == "chat":
            self.max_new_tokens = 256

    def generate(self, n: int, seed: int, difficulty: int | None = None) -> list[Problem]:
        """``n`` distinct problems; ``difficulty`` None draws each level with the ``MIX`` shares."""
        if difficulty is not None and difficulty not in N_NUMBERS:
            raise ConfigError(f"countdown difficulty must be one of {sorted(N_NUMBERS)} or None, got {difficulty}")
        rng = random.Random(seed)
        levels, weights = list(MIX), list(MIX.values())
        out: dict[str, Problem] = {}
        while len(out) < n:
            d = difficulty if difficulty is not None else rng.choices(levels, weights)[0]
            p = draw_problem(rng, d)
            out.setdefault(p.id, p)
        return list(out.values())

    def prompt(self, problem: Problem) -> str:
        if self.style == "chat":  # a base model without a chat template: the zero recipes' text prompt
            return ("A conversation between User and Assistant. The user asks a question, and the assistant "
                    "solves it. The assistant first thinks about the reasoning process in the mind and then "
                    f"provides the user with the answer.\nUser: {self.instruction(problem)}\n"
                    "Assistant: Let me solve this step by step.\n<think>")
        return f"{','.join(map(str, problem.data['numbers']))}>{problem.data['target']}:"

    def instruction(self, problem: Problem) -> str:
        nums = ", ".join(map(str, problem.data["numbers"]))
        if self.style == "chat":
            return (f"Using the numbers [{nums}], create an equation that equals {problem.data['target']}. "
                    "You can use basic arithmetic operations (+, -, *, /) and each number can only be used once; "
                    "division must be exact. Show your work in <think> </think> tags. And return the final "
                    "equation in <answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>.")
        return (
            f"Using some or all of the numbers {nums} (each at most once), the operations "
            f"+ - * / and parentheses, write an expression equal to {problem.data['target']}. "
            "Division must be exact. Reply with only the expression, for example (3+5)*2."
        )

    def verify(self, problem: Problem, completion: str) -> Verdict:
        """Parse error unless the text is only integers, + - * / and parentheses.
        ``answer`` is the canonical expression, even when wrong. With ``style="chat"`` the
        expression is the content of the last ``<answer></answer>`` (after an optional '=')."""
        if self.style == "chat":
            completion = answer_tag(completion)
            if completion is None:
                return UNPARSED
        parsed = parse(completion)
        if parsed is None:
            return UNPARSED
        allowed = Counter(problem.data["numbers"])
        uses_given = not Counter(parsed.leaves) - allowed
        ok = uses_given and parsed.value == problem.data["target"]
        if self.style == "chat" and not ok and self.format_reward:
            return Verdict(reward=self.format_reward, correct=False, parsed=True, answer=parsed.key, mode_key=None)
        return graded(ok, answer=parsed.key, mode_key=parsed.key)

    def solutions(self, problem: Problem, limit: int | None = None) -> list[str]:
        """Canonically distinct solutions with positive integer intermediates, shortest first."""
        keys = all_solutions(tuple(problem.data["numbers"])).get(problem.data["target"], [])
        keys = sorted(set(keys), key=lambda k: (len(k), k))
        return keys if limit is None else keys[:limit]

    def build_splits(self) -> dict[str, list[Problem]]:
        """``train`` 512 and ``eval`` 64, each 40/40/20 % over difficulties 0/1/2, disjoint.

        Each difficulty gets its own seeded stream; eval takes the first problems of it.
        """
        shares = list(MIX.values())
        need = {s: proportional_counts([round(w * 100) for w in shares], size) for s, size in SPLIT_SIZES.items()}
        splits: dict[str, list[Problem]] = {s: [] for s in SPLIT_SIZES}
        for d in MIX:
            pool = self.generate(sum(need[s][d] for s in SPLIT_SIZES), seed=1000 + d, difficulty=d)
            for s in ("eval", "train"):
                splits[s] += pool[: need[s][d]]
                pool = pool[need[s][d]:]
        return {s: sorted(ps, key=lambda p: (p.difficulty, p.id)) for s, ps in splits.items()}
