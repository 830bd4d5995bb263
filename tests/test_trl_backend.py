"""The TRL backend: the workbench's strategies as TRL's advantages, its store and commands
around TRL's GRPOTrainer (CPU, the embedded model, a few steps)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import trl  # noqa: E402,F401  (in the dev extra: a missing TRL fails these tests rather than skipping them)

from workbench.config import RunConfig  # noqa: E402
from workbench.errors import ConfigError  # noqa: E402
from workbench.integrations import trl as wtrl  # noqa: E402
from workbench.metrics import SuccessHistory  # noqa: E402
from workbench.store import RunStore  # noqa: E402
from workbench.strategies.base import GroupBatch, build_strategy  # noqa: E402
from workbench.tasks.base import Verdict  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"rollout.prompts_per_step": 2, "rollout.group_size": 4, "rollout.max_new_tokens": 8, "eval.n": 4,
         "eval.max_problems": 3, "eval.seen_problems": 0, "eval.every": 0, "checkpoint_every": 0,
         "eval.bank_cap": 2}

#: Every advantage-side piece that needs no workbench engine state (the memory sampler and
#: the token calibrations are refused on TRL; entropy_min's input comes from each engine's
#: own forward, so it is not compared bit for bit).
PARITY = ["grpo", "dr_grpo", "rloo", "reinforce", "psr", "nsr", "w_reinforce", "zero",
          "grpo+negative_only", "grpo+inverse_success", "iac", "bbg", "grpo+zero_success_only",
          "grpo+bucket_mask", "format_only+grpo", "incorrect_only+grpo", "majority_vote+grpo", "random+grpo",
          "rloo+inverse_success+bucket_mask"]
PARITY_PARAMS = {"bbg": {"bbg.history": True, "bbg.k": 4}, "grpo+inverse_success": {"inverse_success.alpha": 0.5}}


def _cfg(tmp_path, **kw) -> RunConfig:
    return RunConfig(workspace=str(tmp_path / "ws")).override({**SMALL, **kw})


class RandomVerifier:
    """Seeded verdicts with a success rate per problem (so groups come out all-correct,
    all-wrong and mixed); records every call for the engine side of the comparison."""

    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)
        self.calls: list[list[tuple[str, Verdict]]] = []

    def __call__(self, problems, texts):
        rates = {}
        out = []
        for p in problems:
            rate = rates.setdefault(p.id, self.rng.choice([0.0, 0.3, 0.7, 1.0]))
            correct = self.rng.random() < rate
            parsed = correct or self.rng.random() < 0.6
            answer = str(self.rng.randint(0, 2)) if parsed else None
            out.append(Verdict(reward=float(correct), correct=correct, parsed=parsed, answer=answer,
                               mode_key=answer if correct else None))
        self.calls.append([(p.id, v) for p, v in zip(problems, out)])
        return out


def _engine_advantages(spec, params, calls, G, step, history, seed):
    """What the workbench engine's step computes from the same verdicts."""
    pairs = [x for call in calls for x in call]
    B = len(pairs) // G
    vs = [v for _, v in pairs]
    batch = GroupBatch(problem_ids=[pairs[b * G][0] for b in range(B)],
                       rewards=torch.tensor([v.reward for v in vs]).view(B, G),
                       correct=torch.tensor([v.correct for v in vs]).view(B, G),
                       parsed=torch.tensor([v.parsed for v in vs]).view(B, G),
                       answers=[[vs[b * G + g].answer for g in range(G)] for b in range(B)],
                       entropy=torch.zeros(B, G), step=step, history=history, seed=seed)
    out = build_strategy(spec, params).advantages(batch)
    history.update(step, batch.problem_ids, batch.correct.sum(1).tolist(), G)
    return out.advantage.reshape(-1)


def test_advantage_parity_with_the_engine(tmp_path):
    """(a) The same groups of rewards give the same advantages through TRL and the engine."""
    from datasets import Dataset

    from workbench.models.loading import add_lora, load_model_and_tokenizer
    from workbench.tasks import get_task

    cfg = _cfg(tmp_path, **{"rollout.prompts_per_step": 6, "rollout.max_new_tokens": 4})
    task = get_task("two_primes")
    problems = task.load_split("train")
    model, tok, info = load_model_and_tokenizer(cfg.model)
    model = add_lora(model, cfg.lora)
    rows = wtrl.training_prompts(cfg.override({"steps": 1}), task, problems, use_chat=False)
    verify = RandomVerifier()
    args = wtrl.grpo_config(cfg, tmp_path / "out", 4, "cpu", num_processes=1)
    trainer = wtrl.WorkbenchGRPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                        processing_class=tok, wb_task=task, wb_problems=problems, wb_config=cfg,
                                        wb_verify=verify)
    trainer.model.train()
    G = cfg.rollout.group_size
    inputs = [r for r in rows for _ in range(G)]
    history = SuccessHistory()
    worst, seen = {}, set()
    for spec in PARITY:
        params = PARITY_PARAMS.get(spec, {})
        trainer.set_strategy(spec, params)
        verify.calls.clear()
        out = trainer._generate_and_score_completions(inputs)
        got = out["advantages"].cpu()
        want = _engine_advantages(spec, params, verify.calls, G, trainer.wb_step, history, cfg.seed)
        assert got.shape == want.shape
        worst[spec] = float((got - want).abs().max())
        seen.add(tuple(round(x, 4) for x in got.tolist()))
        assert torch.allclose(got, want, atol=1e-6), (spec, got, want)
    # not vacuous: non-zero advantages, different from call to call
    assert len(seen) >= len(PARITY) // 2 and any(any(x != 0 for x in t) for t in seen)
    print("max |A_trl - A_engine| per strategy:", worst)


def test_engine_only_pieces_are_refused(tmp_path):
    cfg = _cfg(tmp_path, strategy="clip_cov")
    with pytest.raises(ConfigError, match="token-level calibration.*clip_cov.*--backend workbench"):
        wtrl.train_trl(cfg)
    with pytest.raises(ConfigError, match="memory.*DLC.*iac"):
        wtrl.check_trl_strategy(build_strategy("iac_dlc"))
    assert not (tmp_path / "ws" / "store.sqlite").exists() or not RunStore(tmp_path / "ws").list_runs()
    with pytest.raises(ConfigError, match="rollout.group_size"):
        wtrl.parse_trl_args({"num_generations": "4"})
    with pytest.raises(ConfigError, match="no field 'use_vlm'"):
        wtrl.parse_trl_args({"use_vlm": "true"})
    assert wtrl.parse_trl_args({"use_vllm": "true", "vllm_mode": "colocate"}) == {"use_vllm": True,
                                                                                  "vllm_mode": "colocate"}
    from workbench.cli import main, split_trl_args

    assert split_trl_args(["train", "--trl.use_vllm", "--trl.vllm_mode=server", "--trl.ddp_timeout", "60", "-G",
                           "4"]) == (["train", "-G", "4"], {"use_vllm": "true", "vllm_mode": "server",
                                                            "ddp_timeout": "60"})
    assert main(["train", "--trl.use_vllm", "true", "--workspace", str(tmp_path / "ws")]) == 2   # needs --backend trl


def test_cli_trl_run_shows_in_the_dashboard(tmp_path, capsys):
    """(b) `workbench train --backend trl`: 2 steps and an evaluation in the store, read back
    through the dashboard's read path."""
    from ui import live, views
    from workbench.cli import main

    ws = tmp_path / "ws"
    argv = ["train", "--backend", "trl", "--workspace", str(ws), "--steps", "2", "--quiet", "--run-id", "trl-cli"]
    argv += [x for k, v in SMALL.items() for x in (f"--{k}", str(v))]
    assert main(argv) == 0
    assert "run trl-cli finished at step 2" in capsys.readouterr().out
    store = RunStore(ws)
    run = store.get_run("trl-cli")
    assert run["config"]["resolved"]["backend"] == "trl"
    reward = store.scalars("trl-cli", keys=["train/reward_mean"])["train/reward_mean"]
    assert [s for s, _ in reward] == [1, 2]
    evs = store.evaluations("trl-cli")
    assert {(e["label"], e["step"]) for e in evs} == {("base", 0), ("policy", 2)}
    summary = evs[-1]["summary"]
    assert "eval/pass@1" in summary and any(k.startswith("collapse/") for k in summary)
    assert any(k.startswith("boundary/") for k in summary)
    assert store.checkpoints("trl-cli")[-1]["step"] == 2
    ck = Path(store.checkpoints("trl-cli")[-1]["path"])
    assert (ck / "adapter_config.json").is_file() and (ck / "adapter_model.safetensors").is_file()

    from workbench.export import export_run

    exported = export_run("trl-cli", tmp_path / "export", workspace=ws)
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(exported["files"])
    assert "backend `trl`" in (tmp_path / "export" / "README.md").read_text()

    assert main(["eval", "--run", "trl-cli", "--workspace", str(ws), "--n", "2", "--max-problems", "2",
                 "--json"]) == 0                        # the TRL checkpoint evaluates like an engine one
    assert '"step": 2' in capsys.readouterr().out

    fig = views.reward_figure(store, "trl-cli")
    xs = sorted({x for tr in fig.data for x in (tr.x or ())})
    assert 1 in xs and 2 in xs
    out, _, version = live.refresh(live.CachedStore(store), "trl-cli", None, live.Options(), now=0.0)
    assert version is not None and out
    passk = views.passk_figure(store, "trl-cli")
    assert any(len(tr.x or ()) for tr in passk.data)


class _SendAfterFirstStep:
    """A TrainerCallback that sends commands through a second store handle (as the
    dashboard would) once the first step is in the store."""

    def __new__(cls, *a, **kw):
        from transformers import TrainerCallback

        class Sender(TrainerCallback):
            def __init__(self, ws, sends):
                self.ws, self.sends, self.sent = ws, sends, False

            def on_step_end(self, args, state, control, **kw):
                if not self.sent and state.global_step == args.num_iterations:
                    store = RunStore(self.ws)
                    run_id = store.list_runs()[0]["run_id"]
                    for kind, payload in self.sends:
                        store.send_command(run_id, kind, payload)
                    self.sent = True

        return Sender(*a, **kw)


def test_set_strategy_command_takes_effect_at_the_next_step(tmp_path):
    """(d) A set_strategy sent during step 1 applies from step 2 on; one the TRL backend
    cannot run is rejected with the reason and training goes on."""
    cfg = _cfg(tmp_path, steps=3)
    sends = [("set_strategy", {"strategy": "iac_dlc", "params": {}}),
             ("set_strategy", {"strategy": "nsr", "params": {}})]
    run = wtrl.train_trl(cfg, run_id="trl-switch", callbacks=[_SendAfterFirstStep(str(tmp_path / "ws"), sends)])
    store = RunStore(tmp_path / "ws")
    assert store.get_run("trl-switch")["strategy"] == "nsr"
    cmds = {c["payload"]["strategy"]: c for c in store.commands("trl-switch")}
    assert cmds["nsr"]["status"] == "applied"
    assert cmds["iac_dlc"]["status"] == "rejected" and "TRL backend" in cmds["iac_dlc"]["message"]
    switches = [(e["step"], e["payload"]["name"]) for e in store.events("trl-switch", kind="strategy")]
    assert switches == [(0, "grpo"), (1, "nsr")]
    sc = store.scalars("trl-switch", keys=["train/adv_mean", "train/pass@1", "train/frac_mixed"])
    adv, p1 = dict(sc["train/adv_mean"]), dict(sc["train/pass@1"])
    assert abs(adv[1]) < 1e-5                       # GRPO: each group's advantages sum to zero
    for s in (2, 3):                                # NSR: A = -1 on every wrong sample, 0 on correct ones
        assert adv[s] == pytest.approx(-(1 - p1[s]), abs=1e-6)
    assert run.trainer.wb_strategy.name == "nsr"


def test_stop_and_checkpoint_commands_on_a_trl_run(tmp_path):
    cfg = _cfg(tmp_path, steps=4)
    sends = [("checkpoint", {}), ("stop", {})]
    run = wtrl.train_trl(cfg, run_id="trl-stop", callbacks=[_SendAfterFirstStep(str(tmp_path / "ws"), sends)])
    store = RunStore(tmp_path / "ws")
    assert store.get_run("trl-stop")["status"] == "stopped" and store.last_step("trl-stop") == 1
    assert [c["step"] for c in store.checkpoints("trl-stop")] == [1]
    assert [(e["label"], e["step"]) for e in store.evaluations("trl-stop")] == [("base", 0), ("policy", 1)]
    assert {c["status"] for c in store.commands("trl-stop")} == {"applied"}
    assert run.trainer.state.global_step == 2


def test_two_processes_store_each_step_once(tmp_path):
    """(c) Two accelerate processes (gloo on the CPU): each step stored once, by the main one."""
    ws = tmp_path / "ws"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    launcher = Path(sys.executable).with_name("accelerate")
    cmd = [str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "workbench", "train", "--backend", "trl",
           "--workspace", str(ws), "--steps", "2", "--quiet", "--run-id", "trl-ddp"]
    cmd += [x for k, v in SMALL.items() for x in (f"--{k}", str(v))]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.count("finished at step 2") == 1     # only the main process reports
    print([line for line in proc.stdout.splitlines() if "step times" in line])
    store = RunStore(ws)
    assert [r["run_id"] for r in store.list_runs()] == ["trl-ddp"]
    run = store.get_run("trl-ddp")
    assert run["config"]["resolved"]["num_processes"] == 2
    assert run["status"] == "finished"
    steps = [s for s, _ in store.scalars("trl-ddp", keys=["train/reward_mean"])["train/reward_mean"]]
    assert steps == [1, 2]
    rows = store.step_problems("trl-ddp")
    assert sorted((r["step"], r["problem_id"]) for r in rows) == sorted({(r["step"], r["problem_id"]) for r in rows})
    assert len(rows) == 2 * SMALL["rollout.prompts_per_step"]
    assert [(e["label"], e["step"]) for e in store.evaluations("trl-ddp")] == [("base", 0), ("policy", 2)]


@pytest.mark.parametrize("backend", ["workbench", "trl"])
def test_bfloat16_model_trains_two_steps_on_both_backends(random_model_dir, tmp_path, backend):
    """GPU readiness on the CPU: bfloat16 base weights (LoRA in float32) train 2 steps."""
    import math

    from workbench.session import Session

    kw = {**SMALL, "model.name_or_path": str(random_model_dir), "model.dtype": "bfloat16", "model.device": "cpu",
          "steps": 2, "optim.lr": 1e-2, "strategy": "nsr"}   # NSR: a signal even when no sample is right
    if backend == "trl":
        run = wtrl.train_trl(RunConfig(workspace=str(tmp_path)), run_id="bf16", **kw)
        model = run.session.model
    else:
        sess = Session(workspace=str(tmp_path), run_id="bf16", **kw)
        list(sess.run())
        model = sess.model
    store = RunStore(tmp_path)
    assert store.get_run("bf16")["status"] == "finished"
    assert store.get_run("bf16")["config"]["resolved"]["model"]["dtype"] == "bfloat16"
    sc = store.scalars("bf16", keys=["train/loss", "train/grad_norm"])
    assert [s for s, _ in sc["train/loss"]] == [1, 2]
    assert all(math.isfinite(v) for _, v in sc["train/loss"] + sc["train/grad_norm"])
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.dtype == torch.float32 for p in lora_b)
    assert any(float(p.detach().abs().max()) > 0 for p in lora_b)  # the adapter moved off its zero init
    base = [p for n, p in model.named_parameters() if "lora_" not in n and p.dim() == 2]
    assert base and all(p.dtype == torch.bfloat16 for p in base)


def test_resume_from_the_last_usable_trl_checkpoint(tmp_path):
    """Resume continues from TRL's checkpoint (optimiser, RNG, strategy, history); rows
    after it are recomputed for the same prompts; an unusable newer checkpoint is skipped."""
    import shutil

    ws = tmp_path / "ws"
    wtrl.train_trl(_cfg(tmp_path, steps=2, checkpoint_every=1, strategy="nsr"), run_id="trl-resume")
    store = RunStore(ws)
    cks = store.checkpoints("trl-resume")
    assert [c["step"] for c in cks] == [1, 2]
    assert all((Path(c["path"]) / wtrl.STATE_FILE).is_file() for c in cks)
    before = {(r["step"], r["problem_id"]) for r in store.step_problems("trl-resume")}
    shutil.rmtree(cks[1]["path"])                      # the newest checkpoint is lost
    run = wtrl.resume_trl("trl-resume", ws, steps=3)
    assert run.trainer.state.global_step == 3 * 2      # two updates per rollout batch
    assert run.trainer.wb_strategy.name == "nsr"       # the strategy in force at the checkpoint
    steps = [s for s, _ in store.scalars("trl-resume", keys=["train/reward_mean"])["train/reward_mean"]]
    assert steps == [1, 2, 3]
    after = {(r["step"], r["problem_id"]) for r in store.step_problems("trl-resume")}
    assert {x for x in after if x[0] <= 2} == before   # step 2 recomputed on the same prompts
    assert [e["payload"]["from_step"] for e in store.events("trl-resume", kind="resumed")] == [1]
    assert store.get_run("trl-resume")["status"] == "finished"
    assert [c["step"] for c in store.checkpoints("trl-resume")][-1] == 3
    with pytest.raises(ConfigError, match="trained by the workbench engine"):
        from workbench.session import Session

        sess = Session(workspace=str(tmp_path / "ws2"), run_id="eng", steps=0, **{
            k: v for k, v in SMALL.items() if k != "checkpoint_every"})
        sess.close()
        wtrl.resume_trl("eng", tmp_path / "ws2")
