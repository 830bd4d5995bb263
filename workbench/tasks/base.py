"""The task contract: problems, verdicts, and the ``Task`` interface every family implements.

A task family turns a seed into problems, a problem into a prompt, and a completion into a
``Verdict``.  The verdict carries a *mode key* for correct completions — the canonical
identity of the solution — so that "how many different correct solutions does the policy
still produce" (docs/metrics.md, mode collapse) is a count of distinct keys.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from workbench.errors import ConfigError, TaskDataError, UnknownNameError
from workbench.paths import TASKS_DIR


@dataclass(frozen=True)
class Problem:
    """One problem of a family.  ``data`` is family-specific and JSON-serialisable."""

    id: str
    data: dict = field(hash=False)
    difficulty: int = 0

    def to_json(self) -> dict:
        return {"id": self.id, "data": self.data, "difficulty": self.difficulty}

    @classmethod
    def from_json(cls, d: dict) -> "Problem":
        if not isinstance(d, dict) or "id" not in d or not isinstance(d.get("data"), dict):
            raise TaskDataError(
                f"not a problem record: {str(d)[:120]!r}; expected an object with keys "
                "'id', 'data' (an object) and optionally 'difficulty'"
            )
        return cls(id=str(d["id"]), data=d["data"], difficulty=int(d.get("difficulty", 0)))


@dataclass(frozen=True)
class Verdict:
    """The outcome of verifying one completion.

    ``parsed`` False is a parse error (the completion is not an answer of the task's form);
    ``answer`` is the parsed answer as canonical text (for majority-vote rewards), even when
    wrong; ``mode_key`` identifies a *correct* solution and is None otherwise.
    """

    reward: float
    correct: bool
    parsed: bool
    answer: str | None
    mode_key: str | None


#: The verdict for a completion that does not parse.
UNPARSED = Verdict(reward=0.0, correct=False, parsed=False, answer=None, mode_key=None)


def graded(correct: bool, answer: str, mode_key: str | None) -> Verdict:
    """A parsed verdict with a 0/1 reward; the mode key is dropped unless correct."""
    return Verdict(
        reward=1.0 if correct else 0.0,
        correct=correct,
        parsed=True,
        answer=answer,
        mode_key=mode_key if correct else None,
    )


_WS = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Lowercase, collapse whitespace, strip: the mode key for answers without structure."""
    return _WS.sub(" ", str(text)).strip().lower()


class Task(ABC):
    """A task family.  Subclasses set ``name`` and implement the abstract methods.

    ``params`` holds the constructor arguments so a run can record how to rebuild the task.
    """

    name: str = ""
    params: dict[str, Any]
    #: Default generation limit for this family (``rollout.max_new_tokens = 0`` uses it).
    max_new_tokens: int = 128
    #: Called as ``on_event(kind, payload)`` for things a run should record (e.g. a verifier
    #: call past its time limit); a Session sets it to write a store event. None: a warning.
    on_event: Callable[[str, dict], None] | None = None

    def __init__(self) -> None:
        self.params = {}

    # -- problems -------------------------------------------------------------------------
    @abstractmethod
    def generate(self, n: int, seed: int, difficulty: int | None = None) -> list[Problem]:
        """``n`` problems, deterministic in ``seed``; ``difficulty`` None mixes levels."""

    @abstractmethod
    def prompt(self, problem: Problem) -> str:
        """Compact raw-text prompt; the completion follows it directly."""

    @abstractmethod
    def instruction(self, problem: Problem) -> str:
        """Natural-language instruction for chat models; states the answer format."""

    @abstractmethod
    def verify(self, problem: Problem, completion: str) -> Verdict:
        """Grade the generated text (EOS stripped).  Never raises on garbage text."""

    def verify_batch(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[Verdict]:
        """Verify aligned lists (e.g. a flattened ``[B, G]`` group batch)."""
        if len(problems) != len(completions):
            raise ConfigError(
                f"verify_batch got {len(problems)} problems but {len(completions)} completions; "
                "pass one problem per completion (repeat each problem G times for a group)"
            )
        return [self.verify(p, c) for p, c in zip(problems, completions)]

    def emit(self, kind: str, payload: dict) -> None:
        """Report an event to ``on_event``, or as a logged warning when nobody listens."""
        if self.on_event is not None:
            self.on_event(kind, payload)
        else:
            logging.getLogger("workbench").warning("%s: %s", kind, json.dumps(payload, default=str))

    def solutions(self, problem: Problem, limit: int | None = None) -> list[str]:
        """Distinct valid completions, one per mode (for supervised pretraining)."""
        raise NotImplementedError(f"task {self.name!r} cannot enumerate solutions")

    # -- fixed splits ---------------------------------------------------------------------
    def split_names(self) -> list[str]:
        return ["train", "eval"]

    def build_splits(self) -> dict[str, list[Problem]]:
        """The fixed splits, computed deterministically (synthetic families only)."""
        raise NotImplementedError(f"task {self.name!r} has no generated splits")

    def load_split(self, split: str, data_dir: str | Path | None = None) -> list[Problem]:
        """Read ``<data_dir>/<name>/<split>.jsonl`` written by ``write_splits``."""
        if split not in self.split_names():
            raise UnknownNameError("split", split, self.split_names(), f"task {self.name!r}")
        path = Path(data_dir or TASKS_DIR) / self.name / f"{split}.jsonl"
        if not path.is_file():
            raise TaskDataError(
                f"split file {path} is missing; regenerate it with "
                f"`python -m workbench.tasks write-splits --task {self.name}`"
            )
        return [Problem.from_json(rec) for _, rec in read_jsonl(path)]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


def check_param_types(task: str, params: dict[str, tuple[Any, type | tuple[type, ...]]]) -> None:
    """ConfigError naming the first parameter whose value is not of its type(s) (bool is not an int)."""
    for name, (value, types) in params.items():
        allowed = types if isinstance(types, tuple) else (types,)
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            names = {str: "a string", int: "a whole number", float: "a number", os.PathLike: "a path",
                     type(None): "null", bool: "true/false"}
            want = " or ".join(names.get(t, t.__name__) for t in allowed)
            raise ConfigError(f"task {task!r}: {name}={value!r} is not allowed: expected {want}")


class DatasetTask(Task):
    """A family whose problems are records of a data file or dataset: ``_load()`` returns
    {"train": [...], "eval": [...]}, read once; the splits, and ``generate`` (the first ``n``
    train records: not a generator; ``seed`` and ``difficulty`` are ignored), come from it."""

    def _load(self) -> dict[str, list[Problem]]:
        raise NotImplementedError

    def split_names(self) -> list[str]:
        return ["train", "eval"]

    def load_split(self, split: str, data_dir: str | Path | None = None) -> list[Problem]:
        """``train`` or ``eval`` of the loaded data (``data_dir`` is unused: the data is the task's own)."""
        if split not in self.split_names():
            raise UnknownNameError("split", split, self.split_names(), f"task {self.name!r}")
        return list(self._load()[split])

    def generate(self, n: int, seed: int, difficulty: int | None = None) -> list[Problem]:
        return self._load()["train"][:n]

    def _keep_splits(self, problems: dict[str, list[Problem]]) -> dict[str, list[Problem]]:
        """Remember the loaded splits, holding ``self.eval_size`` train records out as ``eval``
        (chosen by ``self.seed``) when the data has no eval split of its own."""
        if "eval" not in problems:
            rows = problems["train"]
            train_idx, eval_idx = holdout_indices(len(rows), self.eval_size, self.seed)
            problems = {"train": [rows[i] for i in train_idx], "eval": [rows[i] for i in eval_idx]}
        self._splits = problems
        return problems


def read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a bad line is a TaskDataError."""
    out: list[tuple[int, dict]] = []
    try:
        f = open(path, "rb")
    except OSError as e:
        raise TaskDataError(f"cannot read {path}: {e.strerror or e}") from e
    with f:
        for lineno, raw in enumerate(f, start=1):
            try:  # a byte-order mark on the first line is allowed
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise TaskDataError(
                    f"{path}, line {lineno}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                    "save the file as UTF-8"
                ) from e
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise TaskDataError(f"{path}, line {lineno}: not valid JSON ({e.msg}); fix or remove that line") from e
            if not isinstance(rec, dict):
                raise TaskDataError(f"{path}, line {lineno}: expected a JSON object, got {type(rec).__name__}")
            out.append((lineno, rec))
    return out


def write_jsonl(path: Path, records: Iterable[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, sort_keys=True) + "\n")


def write_splits(task: Task, data_dir: str | Path = TASKS_DIR) -> list[Path]:
    """Write ``task.build_splits()`` to ``<data_dir>/<task.name>/<split>.jsonl``."""
    paths = []
    for split, problems in task.build_splits().items():
        path = Path(data_dir) / task.name / f"{split}.jsonl"
        write_jsonl(path, (p.to_json() for p in problems))
        paths.append(path)
    return paths


def holdout_indices(n: int, eval_size: int | None, seed: int) -> tuple[list[int], list[int]]:
    """Split ``range(n)`` into (train, eval) index lists, deterministic in ``seed``.

    ``eval_size`` None takes a quarter of the records (at most 500), so a small sample
    file still gets an eval split.  Both lists keep the source order.
    """
    if eval_size is None:
        eval_size = min(n // 4, 500)
    if not 0 <= eval_size <= n:
        raise ConfigError(f"eval_size={eval_size} is outside 0..{n} (the number of records)")
    held = set(random.Random(seed).sample(range(n), eval_size))
    return [i for i in range(n) if i not in held], sorted(held)


def proportional_counts(sizes: Sequence[int], total: int) -> list[int]:
    """Split ``total`` over groups in proportion to ``sizes`` (largest remainder, ties to the first)."""
    whole = sum(sizes)
    exact = [s * total / whole for s in sizes]
    counts = [int(x) for x in exact]
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts
