"""``workbench pretrain``: build the embedded base model from scratch, on a CPU, in minutes.

A character-level tokenizer and a tiny Llama model are trained by supervised learning on
diverse valid solutions of a synthetic task. The model should be a good *subject* for
collapse studies, so the data are shaped on purpose:

- each problem's valid solutions are weighted Zipf(1) over a random (per-problem, seeded)
  order: a favourite solution but a broad spread, so the base model has several modes;
- problems get unequal *exposure*: weight exp(-exposure_decay * u) with u uniform from the
  problem's id. A model this small memorises per problem rather than generalising, so
  exposure sets how well each problem is learned: some problems are solved easily, some
  rarely, some never within 64 samples. That mix is what lets RL both shrink and grow the
  set of solved problems (the boundary). For this family the "difficulty" of a problem
  for the embedded model is therefore mostly its exposure, not the size of N.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from workbench.models.tiny import TinySpec, build_tiny_model
from workbench.models.tokenizer import build_char_tokenizer
from workbench.paths import MODELS_DIR
from workbench.seeding import row_seed

BASE_CHARS = "0123456789+-*/()=:,> N"


@dataclass
class PretrainConfig:
    task: str = field(default="two_primes", metadata={"help": "Synthetic task family to pretrain on."})
    name: str = field(default="tiny-primes", metadata={"help": "Saved as data/models/<name>/."})
    steps: int = field(default=300, metadata={"help": "Optimiser steps."})
    batch_size: int = field(default=256, metadata={"help": "Sequences per step."})
    lr: float = field(default=3e-3, metadata={"help": "Peak AdamW learning rate (warm-up, then cosine)."})
    exposure_decay: float = field(default=15.0, metadata={"help": "Problem weights exp(-decay*u), u~U(0,1) by id."})
    zipf: float = field(default=1.0, metadata={"help": "Zipf exponent over each problem's solutions."})
    max_solutions: int = field(default=64, metadata={"help": "Most solutions per problem in the corpus."})
    seed: int = field(default=0, metadata={"help": "Seed of the init, the orderings and the batches."})
    hidden: int = field(default=128, metadata={"help": "Model width."})
    layers: int = field(default=4, metadata={"help": "Transformer layers."})
    heads: int = field(default=4, metadata={"help": "Attention heads."})
    mlp: int = field(default=384, metadata={"help": "MLP width."})
    eval_n: int = field(default=64, metadata={"help": "Samples per eval problem when measuring the result."})

    def validate(self) -> "PretrainConfig":
        """Raise ConfigError naming the first impossible field (before anything is trained or written)."""
        from workbench.errors import ConfigError

        checks = [
            (self.steps >= 1, "steps", "at least 1"), (self.batch_size >= 1, "batch_size", "at least 1"),
            (self.lr > 0 and math.isfinite(self.lr), "lr", "a positive finite number, e.g. 3e-3"),
            (self.exposure_decay >= 0 and math.isfinite(self.exposure_decay), "exposure_decay", ">= 0"),
            (self.zipf >= 0 and math.isfinite(self.zipf), "zipf", ">= 0"),
            (self.max_solutions >= 1, "max_solutions", "at least 1"), (self.layers >= 1, "layers", "at least 1"),
            (self.heads >= 1, "heads", "at least 1"), (self.mlp >= 1, "mlp", "at least 1"),
            (self.hidden >= 1 and self.hidden % max(self.heads, 1) == 0, "hidden", "a positive multiple of heads"),
            (self.eval_n >= 1, "eval_n", "at least 1"),
            (bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name or "")), "name",
             "a folder name of letters, digits, '.', '_' or '-' (it is saved as data/models/<name>)"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise ConfigError(f"pretrain {name} = {getattr(self, name)!r} is not allowed: expected {expected}.")
        return self


def _uniform_from_id(seed: int, pid: str) -> float:
    return (row_seed(seed, "exposure", pid) % 10**9) / 10**9


def build_corpus(task, problems, cfg: PretrainConfig):
    """(prompts, per-problem solution lists, per-problem solution weights, problem weights)."""
    rng = random.Random(cfg.seed)
    prompts, sols, sol_w, prob_w = [], [], [], []
    for prob in problems:
        s = task.solutions(prob, limit=cfg.max_solutions)
        if not s:
            continue
        s = list(s)
        rng.shuffle(s)  # the favourite is arbitrary, not the smallest pair
        prompts.append(task.prompt(prob))
        sols.append(s)
        sol_w.append([1.0 / (r + 1) ** cfg.zipf for r in range(len(s))])
        prob_w.append(math.exp(-cfg.exposure_decay * _uniform_from_id(cfg.seed, prob.id)))
    return prompts, sols, sol_w, prob_w


def pretrain(cfg: PretrainConfig, out_dir: Path | None = None, progress: bool = True) -> dict:
    """Train and save the model; return a report with the measured base-model figures."""
    from tqdm.auto import tqdm

    from workbench.evaluation import evaluate_model
    from workbench.tasks import get_task

    cfg.validate()
    torch.manual_seed(cfg.seed)
    task = get_task(cfg.task)
    problems = [p for split in task.split_names() for p in task.load_split(split)]
    prompts, sols, sol_w, prob_w = build_corpus(task, problems, cfg)
    texts = [BASE_CHARS, *prompts, *(x for s in sols for x in s)]
    tok = build_char_tokenizer(texts)
    spec = TinySpec(hidden=cfg.hidden, layers=cfg.layers, heads=cfg.heads, mlp=cfg.mlp)
    model = build_tiny_model(len(tok), tok.pad_token_id, tok.eos_token_id, spec, seed=cfg.seed)
    enc_prompt = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    enc_sols = [[tok(x, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for x in s] for s in sols]

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.98))
    warm = max(1, cfg.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps))))
    rng = random.Random(cfg.seed + 1)
    model.train()
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="pretrain", disable=not progress)
    for step in bar:
        pis = rng.choices(range(len(prompts)), weights=prob_w, k=cfg.batch_size)
        seqs, labels = [], []
        for pi in pis:
            sol = rng.choices(enc_sols[pi], weights=sol_w[pi], k=1)[0]
            seqs.append(enc_prompt[pi] + sol)
            labels.append([-100] * len(enc_prompt[pi]) + sol)
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), tok.pad_token_id)
        lab = torch.full((len(seqs), width), -100)
        att = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, (s, lb) in enumerate(zip(seqs, labels)):
            ids[i, : len(s)], lab[i, : len(lb)], att[i, : len(s)] = torch.tensor(s), torch.tensor(lb), 1
        loss = model(input_ids=ids, attention_mask=att, labels=lab).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    train_seconds = time.perf_counter() - t0
    model.eval()

    report = {"config": asdict(cfg), "train_seconds": round(train_seconds, 1),
              "params": sum(p.numel() for p in model.parameters())}
    t1 = time.perf_counter()
    for split in task.split_names():
        res = evaluate_model(model, tok, task, task.load_split(split), n=cfg.eval_n, seed=1234,
                             max_new_tokens=getattr(task, "max_new_tokens", 32))
        report[split] = {k.removeprefix("eval/"): round(v, 4) for k, v in res.summary.items()}
    report["eval_seconds"] = round(time.perf_counter() - t1, 1)

    # written whole into a sibling folder, then swapped in: an interrupted or failed run never
    # leaves a half-written model where the old one was (the embedded model included)
    out_dir = Path(out_dir or MODELS_DIR / cfg.name)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    (tmp / "pretrain.json").write_text(json.dumps(report, indent=2) + "\n")
    old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    if out_dir.exists():
        out_dir.rename(old)
    tmp.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return report
