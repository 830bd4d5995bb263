"""Run ``workbench train`` and SIGKILL this very process at a chosen point (the kill -9 suite).

    python tests/killpoint.py PHASE VARIANT NTH -- train ARGS...
    python tests/killpoint.py --serve

``--serve`` imports torch and loads the model once, then forks one training process per
request (a JSON line on stdin: phase, variant, nth, argv, log), answering ``pid N`` when it
starts and ``exit CODE`` (negative: the signal) when it ends. Each child is a whole
process killed with SIGKILL; forking only saves the seconds of imports per kill.

PHASE is where the kill lands, on its NTH occurrence in this process:
  rollout     sampling a step's completions (VARIANT before / after the sampler ran)
  update      the optimiser update (VARIANT backward: after backward, before the step;
              optimizer: right after AdamW changed the weights)
  commit      inside a step's store transaction, part of its scalars inserted
  checkpoint  writing a checkpoint (VARIANT adapter: after the adapter file, in the
              temporary folder; rename: everything written, just before the rename)
  evaluation  an evaluation (VARIANT compute: computed, not stored; write: inside the
              evaluation's store transaction)
Every hook counts only its own calls; nothing is written between the hook and the kill.
"""

from __future__ import annotations

import os
import signal
import sys


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class _Counter:
    def __init__(self, nth: int):
        self.nth, self.seen = nth, 0

    def hit(self) -> bool:
        self.seen += 1
        return self.seen == self.nth


def install(phase: str, variant: str, nth: int) -> None:
    import torch

    import workbench.session as session_mod
    from workbench.store import _evals, runstore

    count = _Counter(nth)
    if phase == "rollout":
        real_sample = session_mod.sample

        def sample(*a, **kw):
            due = count.hit()
            if due and variant == "before":
                _die()
            out = real_sample(*a, **kw)
            if due:
                _die()
            return out

        session_mod.sample = sample
    elif phase == "update" and variant == "backward":
        real_clip = torch.nn.utils.clip_grad_norm_

        def clip(*a, **kw):
            if count.hit():
                _die()
            return real_clip(*a, **kw)

        torch.nn.utils.clip_grad_norm_ = clip
    elif phase == "update":
        real_step = torch.optim.AdamW.step

        def step(self, *a, **kw):
            out = real_step(self, *a, **kw)
            if count.hit():
                _die()
            return out

        torch.optim.AdamW.step = step
    elif phase == "commit":
        real_write = runstore.RunStore.write_step

        class Dying(dict):
            def items(self):
                for i, kv in enumerate(super().items()):
                    if i == len(self) // 2:
                        _die()
                    yield kv

        def write_step(self, run_id, step, scalars, *a, **kw):
            if count.hit():
                scalars = Dying(scalars)
            return real_write(self, run_id, step, scalars, *a, **kw)

        runstore.RunStore.write_step = write_step
    elif phase == "checkpoint" and variant == "adapter":
        import safetensors.torch as st

        real_save = st.save_file

        def save_file(*a, **kw):
            out = real_save(*a, **kw)
            if count.hit():
                _die()
            return out

        st.save_file = save_file
    elif phase == "checkpoint":
        import workbench.checkpoint as ck

        real_replace = os.replace

        class _Os:
            def __getattr__(self, name):
                return getattr(os, name)

            @staticmethod
            def replace(src, dst, *a, **kw):
                if ".tmp-" in str(src) and count.hit():
                    _die()
                return real_replace(src, dst, *a, **kw)

        ck.os = _Os()
    elif phase == "evaluation" and variant == "compute":
        from workbench.evaluation import Evaluator

        real_eval = Evaluator.evaluate_split

        def evaluate_split(self, *a, **kw):
            out = real_eval(self, *a, **kw)
            if count.hit():
                _die()
            return out

        Evaluator.evaluate_split = evaluate_split
    elif phase == "evaluation":
        real_write_eval = _evals.EvalsMixin.write_evaluation

        def dying_rows(rows):
            for i, r in enumerate(rows):
                if i == 1:
                    _die()
                yield r

        def write_evaluation(self, run_id, step, label, split, summary, problems, *a, **kw):
            if count.hit():
                problems = dying_rows(list(problems))
            return real_write_eval(self, run_id, step, label, split, summary, problems, *a, **kw)

        _evals.EvalsMixin.write_evaluation = write_evaluation
    else:
        raise SystemExit(f"unknown kill point {phase}/{variant}")


def serve() -> None:
    import json

    from workbench.config import RunConfig
    from workbench.models.loading import add_lora, load_model_and_tokenizer
    from workbench.cli import main
    import workbench.session  # noqa: F401

    model, _, _ = load_model_and_tokenizer(RunConfig().model)   # warm every import and file cache
    add_lora(model, RunConfig().lora, seed=0)
    del model
    print("ready", flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the training process
            code = 1
            try:
                fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.close(0)
                if req["phase"] != "outside":
                    install(req["phase"], req["variant"], int(req["nth"]))
                code = main(req["argv"])
            except BaseException as exc:  # noqa: BLE001 - reported through the log and the exit code
                import traceback

                traceback.print_exception(exc)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
        sys.exit(0)
    phase, variant, nth, sep, *cli = sys.argv[1:]
    assert sep == "--", "usage: killpoint.py PHASE VARIANT NTH -- train ARGS..."
    install(phase, variant, int(nth))
    from workbench.cli import main

    sys.exit(main(cli))
