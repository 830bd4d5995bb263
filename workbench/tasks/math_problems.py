"""MATH-style competition problems: a LaTeX question, a worked solution, a final answer in
``\\boxed{}``; from a local JSON Lines file (the shipped 20-problem sample by default) or
a Hub dataset with the same columns.

A completion is graded on its last ``\\boxed{...}`` (none: unparsed), with math-verify
where installed (symbolic equality: ``0.5`` = ``\\frac{1}{2}``, ``1+x^2`` = ``x^2+1``) and
the dependency-free comparison otherwise (see ``workbench.tasks.answers``).
"""

from __future__ import annotations

from pathlib import Path

from workbench.errors import TaskDataError
from workbench.paths import TASKS_DIR
from workbench.tasks.answers import (
    builtin_equal,
    check_choice,
    last_boxed,
    math_verify_equal,
    mode_key_of,
    normalize_latex,
    use_math_verify,
)
from workbench.tasks.base import UNPARSED, DatasetTask, Problem, Verdict, graded, read_jsonl

SAMPLE_PATH = TASKS_DIR / "math_sample.jsonl"


class MathProblems(DatasetTask):
    """Parameters:

    path: a local .jsonl file or a Hub dataset id (default: the shipped 20-problem sample).
    problem_field, solution_field, answer_field: the columns (the answer column may be
        absent: the gold is then the solution's last \\boxed{}).
    config: the Hub dataset configuration.
    eval_size: records held out as ``eval`` (None: a quarter); seed: which ones.
    verifier: auto (math-verify where installed), math_verify, builtin.
    mode_key: answer (default: the canonical final answer), solution_path or text.
    """

    name = "math"
    max_new_tokens = 512

    def __init__(self, path: str | Path | None = None, problem_field: str = "problem",
                 solution_field: str = "solution", answer_field: str = "answer", config: str | None = None,
                 eval_size: int | None = None, seed: int = 0, verifier: str = "auto",
                 mode_key: str = "answer") -> None:
        super().__init__()
        check_choice(verifier, mode_key, "math")
        self.path = str(path) if path is not None else str(SAMPLE_PATH)
        self.problem_field, self.solution_field, self.answer_field = problem_field, solution_field, answer_field
        self.config, self.eval_size, self.seed = config, eval_size, seed
        self.verifier, self.mode_key = verifier, mode_key
        self.params = dict(path=self.path, problem_field=problem_field, solution_field=solution_field,
                           answer_field=answer_field, config=config, eval_size=eval_size, seed=seed,
                           verifier=verifier, mode_key=mode_key)
        self._splits: dict[str, list[Problem]] | None = None
        if Path(self.path).suffix.lower() in (".jsonl", ".json") or Path(self.path).exists():
            self._load()

    def _records(self) -> dict[str, list[dict]]:
        p = Path(self.path)
        if p.suffix.lower() in (".jsonl", ".json") or p.exists():
            if not p.is_file():
                raise TaskDataError(f"math data file {p} does not exist; set path= to a .jsonl file or a Hub dataset id")
            return {"train": [rec for _, rec in read_jsonl(p)]}
        import datasets

        try:
            names = datasets.get_dataset_split_names(self.path, self.config)
            out = {"train": list(datasets.load_dataset(self.path, self.config, split="train" if "train" in names
                                                       else names[0]))}
            if "test" in names:
                out["eval"] = list(datasets.load_dataset(self.path, self.config, split="test"))
        except Exception as e:  # noqa: BLE001 - datasets raises many types
            raise TaskDataError(f"cannot load math data from Hub dataset {self.path!r} (config={self.config!r}): "
                                f"{type(e).__name__}: {e}; check the id, or point path= at a local .jsonl file") from e
        return out

    def _load(self) -> dict[str, list[Problem]]:
        if self._splits is not None:
            return self._splits
        sources = self._records()
        problems = {k: self._problems(recs, k if len(sources) > 1 else None) for k, recs in sources.items()}
        if not problems["train"]:
            raise TaskDataError(f"math data {self.path} has no records")
        return self._keep_splits(problems)

    def _problems(self, records: list[dict], split: str | None) -> list[Problem]:
        out = []
        prefix = f"math-{split}-" if split else "math-"
        for i, rec in enumerate(records):
            if self.problem_field not in rec:
                raise TaskDataError(f"math data {self.path}, record {i}: no {self.problem_field!r} field "
                                    f"(fields: {sorted(rec)}); set problem_field=")
            gold = rec.get(self.answer_field)
            if gold is None and rec.get(self.solution_field) is not None:
                gold = last_boxed(str(rec[self.solution_field]))
            if gold is None or not str(gold).strip():
                raise TaskDataError(f"math data {self.path}, record {i}: no {self.answer_field!r} and no \\boxed{{}} "
                                    f"in {self.solution_field!r}; give each record its final answer")
            level = str(rec.get("level", ""))
            digits = "".join(ch for ch in level if ch.isdigit())
            out.append(Problem(f"{prefix}{i:05d}", {"problem": str(rec[self.problem_field]), "gold": str(gold).strip(),
                                                    "solution": str(rec.get(self.solution_field, ""))},
                               int(digits) if digits else 0))
        return out

    # -- the task ------------------------------------------------------------------------
    def prompt(self, problem: Problem) -> str:
        return f"Problem: {problem.data['problem']}\nSolution:"

    def instruction(self, problem: Problem) -> str:
        return ("Solve the following math problem. Reason step by step, and put your final answer within "
                "\\boxed{}.\n\n" + problem.data["problem"])

    def verify(self, problem: Problem, completion: str) -> Verdict:
        boxed = last_boxed(completion) if isinstance(completion, str) else None
        if boxed is None:
            return UNPARSED
        gold = problem.data["gold"]
        ok = builtin_equal(boxed, gold)
        if not ok and use_math_verify(self.verifier):
            ok = bool(math_verify_equal(f"\\boxed{{{boxed}}}", gold))
        answer = normalize_latex(gold) if ok else normalize_latex(boxed)
        return graded(ok, answer=answer, mode_key=mode_key_of(self.mode_key, completion, answer))

    def solutions(self, problem: Problem, limit: int | None = None) -> list[str]:
        return [problem.data["solution"]][: limit if limit is not None else None]
