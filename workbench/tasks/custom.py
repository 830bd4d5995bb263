"""A user's own task: a JSONL file of records plus a verifier function.

The verifier is named ``"module:function"`` or ``"path/to/file.py:function"`` and called as
``fn(record, completion)``.  It may return:

- a bool: correct or not (reward 1.0 / 0.0);
- a number: the reward; the completion counts as correct iff reward > 0;
- a dict with keys among reward, correct, parsed, answer, mode_key (reward or correct is
  required; the other is derived as above);
- a ``Verdict``.

Unless given, ``answer`` and the mode key are the normalised completion text (docs/metrics.md's
fallback for answers without structure), ``parsed`` is True, and the mode key is dropped
for incorrect completions.

Each call has a time limit (``timeout`` seconds, default 10): the verifier runs in a child
process (``verifier_worker``) that is killed when a call passes the limit; that completion
counts as unparsed (reward 0) and a ``verifier_timeout`` event is reported. The child
imports the verifier's module afresh, so state set in the training process does not reach
it. ``timeout=0`` calls the verifier in the training process itself, with no limit.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

from workbench.errors import ConfigError, TaskDataError, UnknownNameError, VerifierError
from workbench.tasks.base import (
    UNPARSED,
    Problem,
    Task,
    Verdict,
    check_param_types,
    holdout_indices,
    normalize_text,
    read_jsonl,
)
from workbench.tasks.verifier_worker import VerifierWorker, WorkerFailed

_VERDICT_KEYS = {"reward", "correct", "parsed", "answer", "mode_key"}


def load_verifier(spec: str) -> Callable[[dict, str], Any]:
    """Import ``"module:function"`` or ``"path/to/file.py:function"``."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(f"verifier={spec!r} must look like 'module:function' or 'path/to/file.py:function'")
    target, fname = spec.rsplit(":", 1)
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise ConfigError(f"verifier file {path} does not exist (from verifier={spec!r}); give a path relative to the working directory or an absolute one")
            mod_spec = importlib.util.spec_from_file_location(f"_workbench_verifier_{path.stem}", path)
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ConfigError:
        raise
    except Exception as e:  # ImportError, or the module itself failing at import
        raise ConfigError(
            f"cannot import verifier module {target!r} (from verifier={spec!r}): {type(e).__name__}: {e}. "
            "Make it importable (on sys.path) or give a .py file path."
        ) from e
    fn = getattr(module, fname, None)
    if fn is None:
        raise ConfigError(f"verifier module {target!r} has no attribute {fname!r} (from verifier={spec!r})")
    if not callable(fn):
        raise ConfigError(f"verifier {spec!r} is not callable (it is a {type(fn).__name__}); name a function fn(record, completion)")
    return fn


def to_verdict(result: Any, completion: str) -> Verdict:
    """Convert a verifier's return value (see the module docstring); TypeError/ValueError if malformed."""
    if isinstance(result, Verdict):
        return result
    if isinstance(result, bool):
        fields: dict = {"correct": result}
    elif isinstance(result, numbers.Real):
        fields = {"reward": float(result)}
    elif isinstance(result, dict):
        unknown = set(result) - _VERDICT_KEYS
        if unknown:
            raise ValueError(f"returned unknown keys {sorted(unknown)}; allowed: {sorted(_VERDICT_KEYS)}")
        if "reward" not in result and "correct" not in result:
            raise ValueError("returned a dict with neither 'reward' nor 'correct'")
        fields = dict(result)
    else:
        raise TypeError(f"returned a {type(result).__name__}; expected bool, number, dict or Verdict")
    reward = float(fields["reward"]) if "reward" in fields else (1.0 if fields["correct"] else 0.0)
    if not math.isfinite(reward):
        raise ValueError(f"returned a non-finite reward {reward}")
    correct = bool(fields["correct"]) if "correct" in fields else reward > 0
    parsed = bool(fields.get("parsed", True))
    text = normalize_text(completion)
    answer = fields.get("answer", text if parsed else None)
    mode_key = fields.get("mode_key") or text
    return Verdict(reward, correct, parsed, None if answer is None else str(answer), str(mode_key) if correct else None)


class Custom(Task):
    """Your JSONL records, graded by your verifier function (each call time-limited).

    Parameters:

    path: the JSONL file, one JSON object per line.
    verifier: ``"module:function"`` or ``"path/to/file.py:function"``.
    prompt_field: the key holding the prompt text (used as the raw prompt and, unless a
        record has an ``instruction`` key, as the instruction too).
    id_field: the key holding a unique id (records without it get ``line-<n>``).
    eval_size, seed: records held out as ``eval`` (None: a quarter) — used only when no
        record has a ``split`` key; otherwise ``split`` values name the splits verbatim
        (records without one go to ``train``).
    timeout: seconds one verifier call may take (default 10); a call past it counts as
        unparsed and is reported as an event. 0 = no limit (the verifier then runs in the
        training process).
    """

    name = "custom"
    #: Timeouts on this many different completions in a row (no verdict in between) stop
    #: the batch with a VerifierError: the verifier is stuck on everything, not on one input.
    MAX_TIMEOUT_STREAK = 5

    def __init__(
        self,
        path: str | Path,
        verifier: str,
        prompt_field: str = "prompt",
        id_field: str = "id",
        eval_size: int | None = None,
        seed: int = 0,
        timeout: float = 10.0,
    ) -> None:
        super().__init__()
        check_param_types("custom", {"path": (path, (str, os.PathLike)), "prompt_field": (prompt_field, str),
                                     "id_field": (id_field, str), "seed": (seed, int)})
        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not 0 <= timeout < math.inf:
            raise ConfigError(f"custom task: timeout={timeout!r} is not allowed: expected seconds per verifier "
                              "call, a finite number >= 0 (0 = no limit)")
        if eval_size is not None and (isinstance(eval_size, bool) or not isinstance(eval_size, int) or eval_size < 0):
            raise ConfigError(f"custom task: eval_size={eval_size!r} is not allowed: expected a whole number >= 0 "
                              "or null (a quarter of the records)")
        self.path, self.verifier_spec = Path(path), verifier
        self.prompt_field, self.id_field = prompt_field, id_field
        self.timeout = float(timeout)
        self.params = dict(path=str(path), verifier=verifier, prompt_field=prompt_field,
                           id_field=id_field, eval_size=eval_size, seed=seed, timeout=timeout)
        self.fn = load_verifier(verifier)
        self._splits = self._read(eval_size, seed)
        self._worker: VerifierWorker | None = None
        self._hung: set[tuple[str, str]] = set()  # (problem id, completion) pairs that timed out

    def _read(self, eval_size: int | None, seed: int) -> dict[str, list[Problem]]:
        if not self.path.is_file():
            raise TaskDataError(f"custom task data file {self.path} does not exist; set path= to a JSONL file")
        problems: list[Problem] = []
        named: dict[str, Any] = {}
        for lineno, rec in read_jsonl(self.path):
            if self.prompt_field not in rec:
                raise TaskDataError(
                    f"{self.path}, line {lineno}: no {self.prompt_field!r} field (keys: {sorted(rec)}); "
                    "set prompt_field= to the key that holds the prompt"
                )
            pid = str(rec[self.id_field]) if self.id_field in rec else f"line-{lineno}"
            if pid in named:
                raise TaskDataError(f"{self.path}, line {lineno}: duplicate id {pid!r}; ids must be unique")
            diff = rec.get("difficulty", 0)
            problems.append(Problem(pid, rec, diff if isinstance(diff, int) and not isinstance(diff, bool) else 0))
            named[pid] = rec.get("split")
        if not problems:
            raise TaskDataError(f"custom task data file {self.path} has no records")
        if any(v is not None for v in named.values()):
            splits: dict[str, list[Problem]] = {}
            for p in problems:
                splits.setdefault(str(named[p.id] or "train"), []).append(p)
            return splits
        train_idx, eval_idx = holdout_indices(len(problems), eval_size, seed)
        return {"train": [problems[i] for i in train_idx], "eval": [problems[i] for i in eval_idx]}

    def split_names(self) -> list[str]:
        return list(self._splits)

    def load_split(self, split: str, data_dir: str | Path | None = None) -> list[Problem]:
        """A split of the file (``data_dir`` is unused: the data is ``path``)."""
        if split not in self._splits:
            raise UnknownNameError("split", split, self.split_names(), f"custom task {self.path}")
        return list(self._splits[split])

    def generate(self, n: int, seed: int, difficulty: int | None = None) -> list[Problem]:
        """Not a generator: the first ``n`` train records; ``seed`` and ``difficulty`` are ignored."""
        return self._splits.get("train", [])[:n]

    def prompt(self, problem: Problem) -> str:
        return str(problem.data[self.prompt_field])

    def instruction(self, problem: Problem) -> str:
        return str(problem.data.get("instruction", problem.data[self.prompt_field]))

    def verify(self, problem: Problem, completion: str) -> Verdict:
        """Call the user's verifier; anything it raises becomes a VerifierError naming the problem."""
        return self.verify_batch([problem], [completion])[0]

    def verify_batch(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[Verdict]:
        """Verify aligned lists; with a timeout, in the verifier's child process (see the module)."""
        if len(problems) != len(completions):
            return super().verify_batch(problems, completions)  # its error message
        if not self.timeout:
            out = []
            for p, c in zip(problems, completions):
                try:
                    out.append(to_verdict(self.fn(dict(p.data), c), c))
                except Exception as e:
                    raise self._failed(p, c, e) from e
            return out
        keys = [(p.id, c) for p, c in zip(problems, completions)]
        todo = [i for i, k in enumerate(keys) if k not in self._hung]
        verdicts: list[Verdict] = [UNPARSED] * len(problems)
        if not todo:
            return verdicts

        def timed_out(j: int, seconds: float, repeats: int, streak: int) -> None:
            p, c = problems[todo[j]], completions[todo[j]]
            self._hung.add((p.id, c))
            self.emit("verifier_timeout", {"verifier": self.verifier_spec, "problem_id": p.id, "timeout": self.timeout,
                                           "completion": c[:200], "samples": repeats})
            if streak >= self.MAX_TIMEOUT_STREAK:
                raise VerifierError(
                    f"verifier {self.verifier_spec!r} passed its {self.timeout:g} s limit on {streak} different "
                    f"completions in a row (the last on problem {p.id!r}): it looks stuck on every input. "
                    "Fix the verifier, or raise the custom task's timeout parameter (0 = no limit)")

        if self._worker is None:
            self._worker = VerifierWorker(self.verifier_spec, self.timeout)
        try:
            results = self._worker.run([dict(problems[i].data) for i in todo], [completions[i] for i in todo],
                                       [keys[i] for i in todo], timed_out)
        except WorkerFailed as e:
            self.close()
            raise VerifierError(f"verifier {self.verifier_spec!r}: {e}. Its output (stderr) says why; "
                                "fix the verifier, or set the custom task's timeout=0 to run it in this process") from e
        except VerifierError:
            self.close()
            raise
        for i, (kind, value) in zip(todo, results):
            if kind == "ok":
                verdicts[i] = value
            elif kind == "error":
                raise self._failed(problems[i], completions[i], value) from value
        return verdicts

    def _failed(self, problem: Problem, completion: Any, e: BaseException) -> VerifierError:
        snippet = completion[:80] if isinstance(completion, str) else repr(completion)[:80]
        return VerifierError(
            f"verifier {self.verifier_spec!r} failed on problem {problem.id!r} "
            f"with completion {snippet!r}: {type(e).__name__}: {e}"
        )

    def close(self) -> None:
        """Stop the verifier's child process (a new one starts on the next call)."""
        if self._worker is not None:
            self._worker.close()
            self._worker = None
