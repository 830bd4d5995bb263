"""GSM8K-style word problems loaded with ``datasets`` from a local file or the Hub.

The gold answer is the number after ``####`` in the answer field.  A completion's final
answer is the number after its last ``####``, else its last number; they are compared
numerically, and with ``math-verify`` too where it is installed (``verifier``), which also
accepts LaTeX, fractions and units.  The mode key is selectable (``mode_key``: the
normalised text, the final answer, or the solution path; see ``workbench.tasks.answers``).
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

from workbench.errors import ConfigError, TaskDataError
from workbench.paths import TASKS_DIR
from workbench.tasks.answers import NUMBER, canonical_number
from workbench.tasks.base import UNPARSED, DatasetTask, Problem, Verdict, check_param_types, graded

SAMPLE_PATH = TASKS_DIR / "gsm8k_sample.jsonl"
TOLERANCE = 1e-6
_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
# Numbers are read as workbench.tasks.answers reads them (NUMBER, canonical_number): a minus
# sign only when it does not follow a word, commas only as thousands separators.


def final_answer(text: str) -> str | None:
    """The number after the last ``####`` if there is one, else the last number in the text."""
    if "####" in text:
        found = NUMBER.search(text.rsplit("####", 1)[1])
        return canonical_number(found.group()) if found else None
    found = NUMBER.findall(text)
    return canonical_number(found[-1]) if found else None


def gold_answer(answer: str) -> str | None:
    """Gold from a GSM8K answer field; a bare number (no ``####``) is accepted too."""
    if "####" in answer:
        found = NUMBER.search(answer.rsplit("####", 1)[1])
        return canonical_number(found.group()) if found else None
    return canonical_number(answer)


def _has_content(path: Path) -> bool:
    """False for an empty file or one of blank lines (a CSV header alone counts as content).
    A text file (JSON, JSONL, CSV) that is not UTF-8 is a TaskDataError naming the line."""
    text = path.suffix.lower() != ".parquet"
    found = False
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, start=1):
            found = found or bool(line.strip())
            if not text:
                if found:
                    return True
                continue
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as e:
                raise TaskDataError(f"gsm8k data file {path}, line {lineno}: not UTF-8 text (byte "
                                    f"0x{line[e.start]:02x} at column {e.start + 1}); save the file as UTF-8") from e
    return found


class GSM8K(DatasetTask):
    """Parameters:

    path: a local .json/.jsonl/.csv/.parquet file or a Hub dataset id (default: the shipped
        24-problem sample).
    question_field, answer_field: the columns holding the question and the GSM8K answer.
    config: the Hub dataset configuration (e.g. "main" for openai/gsm8k).
    eval_size: records held out as ``eval`` when the source has one split (None: a quarter,
        at most 500); ignored when the source has a "test" or "validation" split.
    seed: which records are held out.
    verifier: auto (math-verify where installed, else the numeric comparison), math_verify, builtin.
    mode_key: text (normalised completion), answer (final answer) or solution_path (the
        multiset of intermediate results of its equations).
    """

    name = "gsm8k"
    max_new_tokens = 256

    def __init__(
        self,
        path: str | Path | None = None,
        question_field: str = "question",
        answer_field: str = "answer",
        config: str | None = None,
        eval_size: int | None = None,
        seed: int = 0,
        verifier: str = "auto",
        mode_key: str = "text",
    ) -> None:
        super().__init__()
        from workbench.tasks.answers import check_choice

        check_choice(verifier, mode_key, "gsm8k")
        check_param_types("gsm8k", {"path": (path, (str, os.PathLike, type(None))),
                                    "question_field": (question_field, str), "answer_field": (answer_field, str),
                                    "config": (config, (str, type(None))), "eval_size": (eval_size, (int, type(None))),
                                    "seed": (seed, int)})
        if eval_size is not None and eval_size < 0:
            raise ConfigError(f"task 'gsm8k': eval_size={eval_size} is not allowed: expected a whole number >= 0 "
                              "or null (a quarter of the records, at most 500)")
        self.verifier, self.mode_key = verifier, mode_key
        self.path = str(path) if path is not None else str(SAMPLE_PATH)
        self.question_field, self.answer_field = question_field, answer_field
        self.config, self.eval_size, self.seed = config, eval_size, seed
        self.params = dict(path=self.path, question_field=question_field, answer_field=answer_field,
                           config=config, eval_size=eval_size, seed=seed, verifier=verifier, mode_key=mode_key)
        self._splits: dict[str, list[Problem]] | None = None
        if self._is_local():
            self._load()  # local files are cheap: report a bad file or column now

    # -- loading ----------------------------------------------------------------------------
    def _is_local(self) -> bool:
        p = Path(self.path)
        if p.exists() or p.suffix.lower() in _BUILDERS:
            if not p.is_file():
                raise TaskDataError(f"gsm8k data file {p} does not exist; set path= to a .jsonl/.json/.csv/.parquet file or a Hub dataset id")
            if p.suffix.lower() not in _BUILDERS:
                raise TaskDataError(f"gsm8k data file {p} has an unsupported extension; use one of {', '.join(_BUILDERS)}")
            return True
        return False

    def _load(self) -> dict[str, list[Problem]]:
        if self._splits is not None:
            return self._splits
        import datasets  # heavy: imported only when data is needed

        local = self._is_local()
        if local and not _has_content(Path(self.path)):
            raise TaskDataError(f"gsm8k data file {self.path} is empty (no records); point path= at a file with "
                                f"{self.question_field!r} and {self.answer_field!r} records")
        try:
            if local:
                builder = _BUILDERS[Path(self.path).suffix.lower()]
                sources = {"train": datasets.load_dataset(builder, data_files=self.path, split="train")}
            else:  # a Hub id: needs the network or a warm cache
                names = datasets.get_dataset_split_names(self.path, self.config)
                wanted = {"train": "train" if "train" in names else names[0]}
                held = [s for s in ("test", "validation") if s in names]
                if held:
                    wanted["eval"] = held[0]
                sources = {k: datasets.load_dataset(self.path, self.config, split=s) for k, s in wanted.items()}
        except Exception as e:  # datasets raises many types: unreadable file, no network, no such id
            where = f"file {self.path}" if local else f"Hub dataset {self.path!r} (config={self.config!r})"
            if "corresponds to no data" in str(e):  # e.g. a CSV with a header and no rows
                raise TaskDataError(f"gsm8k data {where} has no records; point path= at data with "
                                    f"{self.question_field!r} and {self.answer_field!r} records") from e
            hint = "check the file's format" if local else "check the id and config, or point path= at a local file"
            raise TaskDataError(f"cannot load gsm8k data from {where}: {type(e).__name__}: {e}; {hint}") from e
        problems = {k: self._problems(ds, k if len(sources) > 1 else None) for k, ds in sources.items()}
        if not problems["train"]:
            where = f"file {self.path}" if local else f"Hub dataset {self.path!r}"
            raise TaskDataError(f"gsm8k data from {where} has no records; point path= at data with "
                                f"{self.question_field!r} and {self.answer_field!r} records")
        return self._keep_splits(problems)

    def _problems(self, ds, split: str | None) -> list[Problem]:
        cols = list(ds.column_names)
        for field, param in ((self.question_field, "question_field"), (self.answer_field, "answer_field")):
            if field not in cols:
                raise TaskDataError(
                    f"gsm8k data {self.path} has no column {field!r}; its columns are {cols}. "
                    f"Set {param}= to the column that holds it."
                )
        out = []
        prefix = f"gsm8k-{split}-" if split else "gsm8k-"
        for i, (q, a) in enumerate(zip(ds[self.question_field], ds[self.answer_field])):
            gold = gold_answer(str(a))
            if gold is None:
                raise TaskDataError(
                    f"gsm8k data {self.path}, record {i}: no final number in {self.answer_field!r} "
                    f"({str(a)[-60:]!r}); answers must end with '#### <number>' or be a number"
                )
            steps = str(a).split("####")[0].strip()
            difficulty = len([line for line in steps.splitlines() if line.strip()])
            out.append(Problem(f"{prefix}{i:05d}", {"question": str(q), "answer": str(a), "gold": gold}, difficulty))
        return out

    # -- the task ------------------------------------------------------------------------
    def prompt(self, problem: Problem) -> str:
        return f"Question: {problem.data['question']}\nAnswer:"

    def instruction(self, problem: Problem) -> str:
        return (
            "Solve the following grade-school math problem. Reason step by step, then give the "
            "final answer on its own line in the form '#### <number>'.\n\n" + problem.data["question"]
        )

    def verify(self, problem: Problem, completion: str) -> Verdict:
        answer = final_answer(completion) if isinstance(completion, str) else None
        if answer is None:
            return UNPARSED
        from workbench.tasks.answers import math_verify_equal, mode_key_of, use_math_verify

        ok = abs(float(Decimal(answer)) - float(Decimal(problem.data["gold"]))) <= TOLERANCE
        if not ok and use_math_verify(self.verifier):  # e.g. \frac{3}{4}, 72\%, "$72.00"
            tail = completion.rsplit("####", 1)[1] if "####" in completion else completion
            if math_verify_equal(tail, problem.data["gold"]):
                ok, answer = True, problem.data["gold"]
        return graded(ok, answer=answer, mode_key=mode_key_of(self.mode_key, completion, answer))

    def solutions(self, problem: Problem, limit: int | None = None) -> list[str]:
        """The gold answer text: the one solution the data gives."""
        return [problem.data["answer"]][: limit if limit is not None else None]
