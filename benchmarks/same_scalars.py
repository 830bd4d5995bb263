"""Check that a change leaves training behaviour alone: the stored scalars of fixed-seed runs
made by the working tree and by an earlier commit, compared value for value.

    python benchmarks/same_scalars.py --against HEAD~1 [--steps 3]

Both sides run the same short runs (the embedded model, B = 4, G = 4, seed 3) through
``Session`` and read each step's scalars back from their run store; timing keys (``time/``,
``perf/``) are left out, everything else must be identical (not close: identical). The
cases cover the on-policy update (grpo), several updates with token calibrations, a KL and
an entropy term (clip_cov), the |log rho| penalty (kl_cov) and off-policy sampling with a
sampling calibration (iac_dlc), and two runs that evaluate after every step (held-out and
seen splits) while switching strategy iac_dlc -> grpo -> iac_dlc, one of them stopped and
resumed from its checkpoint before the switch back (the memory network's state then comes
from the checkpoint). For those, every evaluation's summary (base and policy: eval/,
collapse/, boundary/, sharpen/ keys) and per-problem rows, the bank of base modes and the
strategy events are compared too. The earlier commit is exported with ``git archive`` into a
temporary folder; nothing in the working tree is touched. Exit status 1 on any difference.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: evaluation after every step on the held-out split and a seen split (collapse, boundary, sharpen keys)
EVAL = {"eval.every": 1, "eval.n": 4, "eval.max_problems": 3, "eval.seen_problems": 2}
#: before step s: switch to (strategy, params)
SWITCH = {"2": ["grpo", {}], "3": ["iac_dlc", {}]}

CASES = {
    "grpo": {},
    "clip_cov, 2 updates, KL and entropy": {"strategy": "clip_cov", "optim.updates_per_batch": 2,
                                            "loss.kl_coef": 0.05, "loss.entropy_coef": 0.01},
    "kl_cov": {"strategy": "kl_cov"},
    "iac_dlc (off-policy sampling)": {"strategy": "iac_dlc"},
    "evaluations, switch iac_dlc -> grpo -> iac_dlc": {"strategy": "iac_dlc", **EVAL, "switch": SWITCH},
    "evaluations, switch, resume before the switch back": {"strategy": "iac_dlc", **EVAL, "switch": SWITCH,
                                                           "checkpoint_every": 1, "resume_at": 3},
}

RUN = """
import json, sys, tempfile
from workbench.session import Session
from workbench.store import RunStore
cases, steps = json.loads(sys.argv[1]), int(sys.argv[2])
out = {}
for name, kw in cases.items():
    kw = dict(kw)
    switch, resume_at = {int(k): v for k, v in kw.pop("switch", {}).items()}, kw.pop("resume_at", None)
    with tempfile.TemporaryDirectory() as ws:
        sess = Session(workspace=ws, steps=steps, seed=3, **{"rollout.prompts_per_step": 4, "rollout.group_size": 4,
                       "eval.every": 0, "eval.n": 1, "eval.max_problems": 2, "eval.seen_problems": 0,
                       "checkpoint_every": 0, **kw})
        for s in range(1, steps + 1):
            if s == resume_at:
                sess.close()
                sess = Session.resume(sess.run_id, workspace=ws)
            if s in switch:
                sess.set_strategy(switch[s][0], **switch[s][1])
            sess.step()
        store = RunStore(ws)
        rows = store.scalars(sess.run_id)
        got = {str(k): v for k, v in rows.items() if not str(k).startswith(("time/", "perf/"))}
        for ev in store.evaluations(sess.run_id):
            where = f"evaluation {ev['label']} {ev['split']} step {ev['step']}"
            got.update({f"{where}: {k}": v for k, v in ev["summary"].items()})
            got[f"{where}: problems"] = store.eval_problems(sess.run_id, ev["eval_id"])
        if store.evaluations(sess.run_id):
            got["bank"] = store.bank(sess.run_id)
        got["strategy events"] = [(e["step"], e["payload"]) for e in store.events(sess.run_id, kind="strategy")]
        out[name] = got
        sess.close()
print(json.dumps(out, sort_keys=True))
"""


def scalars(tree: Path, steps: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "WORKBENCH_DATA": str(tree / "data")}
    proc = subprocess.run([sys.executable, "-c", RUN, json.dumps(CASES), str(steps)], capture_output=True, text=True,
                          env=env, cwd=tree)
    if proc.returncode != 0:
        sys.exit(f"the runs failed in {tree}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", default="HEAD", help="the commit to compare the working tree with")
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "archive", a.against, "workbench", "data"], cwd=ROOT, capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        before = scalars(Path(tmp), a.steps)
    after = scalars(ROOT, a.steps)
    diffs = [(case, key, before[case].get(key), after[case].get(key)) for case in CASES
             for key in sorted(set(before[case]) | set(after[case]))
             if json.dumps(before[case].get(key)) != json.dumps(after[case].get(key))]           # NaN == NaN here
    n = sum(len(v) for v in after.values())
    for d in diffs:
        print("differs:", *d)
    print(f"{len(CASES)} runs x {a.steps} steps, {n} series compared with {a.against}: "
          f"{'identical' if not diffs else f'{len(diffs)} differ'}")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
