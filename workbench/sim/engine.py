"""The Simulator: RLVR on a featurised softmax policy, through the engine's own strategy and loss.

One step (the LLM engine's step with a mode in place of a completion):
draw B training problems -> sample G modes each from pi_old -> rewards, correct
-> ``GroupBatch`` -> ``strategy.advantages`` (reward transform -> estimator -> calibrations)
-> ``workbench.losses.policy_loss`` with each sample as one "token" (clipping against
pi_old, aggregation, KL to the base, entropy term, token calibrations) -> gradient steps
on the policy's parameters, ``updates_per_batch`` times.

``expected_step()`` is the same update with the sampling noise removed: the exact
expectation of the loss over the draw of problems and of groups of G (infinitely many
groups of the same size G). Its per-sample advantages come from the strategy itself,
applied to every possible group composition. Shapes: P problems, M modes, B problems per
step, G samples per problem, N = B*G samples, R training problems.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
import torch

from workbench import keys as K
from workbench.errors import ConfigError
from workbench.losses import policy_loss
from workbench.metrics import SuccessHistory, approx_kl, distribution_entropy, kl_k3
from workbench.seeding import row_seed
from workbench.sim import policy as pol
from workbench.sim.policy import one_thread as _one_thread
from workbench.sim.config import SimConfig, build_world
from workbench.sim.evaluation import evaluate_split
from workbench.strategies.base import GroupBatch, Strategy, build_strategy
from workbench.strategies import pieces as _pieces  # noqa: F401  (registers the implementations)
from workbench.update import loss_settings, update


class Simulator:
    """An instant RLVR run. ``Simulator(SimConfig(...))`` or ``Simulator(coupling=0.5, ...)``."""

    def __init__(self, config: SimConfig | dict | None = None, **overrides: Any):
        config = SimConfig.coerce(config, **overrides)
        self.config = config.validate()
        cfg = self.config
        self.world = build_world(cfg)
        self.policy = pol.FeaturePolicy(self.world.base_logp, self.world.correct, cfg.coupling)
        self.base_probs = np.exp(self.world.base_logp)                             # [P, M]
        self._rewards = torch.as_tensor(self.world.rewards, dtype=torch.float32)   # [P, M]
        self._correct = torch.as_tensor(self.world.correct)                        # [P, M]
        self._train = torch.as_tensor(self.world.train_ids)                        # [R]
        self._stack = _Stack(self.policy.base_logp[None], self._rewards[None], self._correct[None])   # S = 1
        self._batch = None                         # the SimBatch this run belongs to, if any
        self.generator = torch.Generator().manual_seed(row_seed(cfg.seed, "sim"))
        if cfg.optimizer == "adam":
            self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr)
        else:
            self.optimizer = None   # plain SGD, done by hand (no per-step optimiser overhead)
        self.strategy = self._build(cfg.strategy, cfg.strategy_params)
        self._history = SuccessHistory()           # per-problem success record, brought up to date on use
        self._history_upto = 0                     # how many entries of _samples it holds
        self.step_count = 0
        self.records: list[dict] = []              # one scalar record per step
        self.evaluations: list[dict] = []          # {"step", "label", "split", "summary", "problems"}
        self.events: list[tuple[int, str, dict]] = [(0, "strategy", self.strategy.describe())]
        self._samples: list[tuple] = []            # (step, rows [B], modes [B, G], |adv| [B], reward [B], c [B])
        rng = np.random.default_rng(row_seed(cfg.seed, "eval") % (2**63))
        self._uniforms = rng.random((cfg.problems, cfg.eval_n))                    # [P, n] common random numbers
        self._store = None
        self._canon = None                         # cached canonical advantages of expected_step
        self._no_answers = None
        self.run_id: str | None = None
        self._base: dict[str, list[dict]] = {}
        self._evaluate(label="base")

    # ------------------------------------------------------------------ strategies
    def _build(self, spec: str, params: dict) -> Strategy:
        strat = build_strategy(spec, params)
        if strat.sampling is not None:
            raise ConfigError(
                f"strategy {spec!r} has the sampling calibration {strat.sampling[0].name!r} (DLC's memory network), "
                "which needs a language model's token stream; the simulator has none. Use the strategy without it "
                "(e.g. 'iac' instead of 'iac_dlc'), or run it on a model with workbench.session.Session")
        return strat

    def set_strategy(self, spec: str, **params: Any) -> None:
        """Switch strategy from the next step on (an event at the current step)."""
        self.strategy = self._build(spec, params)
        self.config.strategy, self.config.strategy_params = spec, dict(params)
        event = (self.step_count, "strategy", self.strategy.describe())
        self.events.append(event)
        if self._store is not None:
            self._store.set_strategy(self.run_id, spec)
            self._store.add_event(self.run_id, *event)

    def _loss_settings(self) -> dict[str, Any]:
        return loss_settings(self.config.loss, self.strategy)

    def _check_alone(self) -> None:
        if self._batch is not None:
            raise ConfigError("this Simulator is one run of a SimBatch, whose parameters it shares: step the "
                              "SimBatch (SimBatch.step / run / train), or make a Simulator of its own")

    def _updates_per_batch(self) -> int:
        """Gradient steps per batch (the config's, unless the strategy sets it, e.g. ``kl_cov``)."""
        return self.strategy.updates_per_batch(self.config.updates_per_batch)

    # ------------------------------------------------------------------ training
    def step(self) -> dict:
        """One sampled training step; returns its scalar record."""
        self._check_alone()
        with _one_thread():
            return self._step()

    def _step(self) -> dict:
        pi = self.policy
        return sampled_step([self], pi.a[None], pi.s[None], self._stack,
                            lambda loss, rows, logp_full: self._descend(loss, rows[0], logp_full[0]))[0]

    def expected_step(self) -> dict:
        """One exact infinite-batch update: the expectation over the draw of B problems and of
        groups of G of the sampled step's loss, then ``updates_per_batch`` gradient steps on it.

        The advantage of a sample in a group depends on its own reward and the multiset of
        the others' rewards; the strategy is applied to every such group (a canonical batch)
        and each is weighted by its multinomial probability under pi_old. Strategies whose
        advantages depend on more than that are rejected: reward transforms (random,
        majority vote, entropy), token calibrations (random or top-fraction token choices)
        and BBG's ``history`` option.
        """
        self._check_alone()
        with _one_thread():
            return self._expected_step()

    def _expected_step(self) -> dict:
        cfg, pi = self.config, self.policy
        self._check_exchangeable()
        s = self.step_count + 1
        G, M = cfg.group_size, self.world.rewards.shape[1]
        rows = self._train                                                                      # [R]
        R = len(rows)
        levels, level_of = np.unique(self.world.rewards, return_inverse=True)                  # [L], [P*M]
        level_of = torch.as_tensor(level_of.reshape(self.world.rewards.shape))[rows]           # [R, M]
        comps, adv_lk = self._canonical_advantages(levels, s)                                  # [K, L], [L, K]
        L = len(levels)
        with torch.no_grad():
            logp_old_all = pi.log_probs(rows)                                                   # [R, M]
            p_old = logp_old_all.exp()
            q = torch.zeros(R, L, dtype=torch.float64).scatter_add_(1, level_of, p_old)         # [R, L] mass per level
            log_pmf = (math.lgamma(G) - torch.lgamma(comps + 1.0).sum(1))[None, :] \
                + torch.xlogy(comps[None, :, :], q[:, None, :]).sum(-1)                         # [R, K]
            pmf = log_pmf.exp()                                                                 # [R, K]
            a_pos = pmf @ adv_lk.clamp(min=0).T                                                 # [R, L] E[A+ | level]
            a_neg = pmf @ adv_lk.clamp(max=0).T                                                 # [R, L] E[A- | level]
            adv = torch.stack([a_pos.gather(1, level_of), a_neg.gather(1, level_of)], -1)      # [R, M, 2]
            adv = adv.reshape(R * M, 2)
            weight = (2 * M * p_old).reshape(R * M, 1).expand(R * M, 2)                         # [R*M, 2]
            old = logp_old_all.reshape(R * M, 1).expand(R * M, 2)
            ref = pi.base_logp[rows].reshape(R * M, 1).expand(R * M, 2)
        mask = torch.ones(R * M, 2, dtype=torch.float64)
        first = torch.tensor([1.0, 0.0], dtype=torch.float64)                                  # KL/entropy once per sample
        loss_cfg = self._loss_settings()
        losses = []
        for _ in range(self._updates_per_batch()):
            z = pi.logits(rows)                                                                 # [R, M]
            logp_full = torch.log_softmax(z, -1)
            logp = logp_full.reshape(R * M, 1).expand(R * M, 2)                                 # [R*M, 2]
            extra = torch.zeros(R * M, 2, dtype=torch.float64)
            if loss_cfg["kl_coef"] > 0:
                extra = extra + weight * first * loss_cfg["kl_coef"] * kl_k3(logp, ref)
            if loss_cfg["entropy_coef"] != 0:
                h = distribution_entropy(logp_full, masked_vocab=False)                     # [R]
                h = h[:, None].expand(R, M).reshape(R * M, 1)
                extra = extra - weight * first * loss_cfg["entropy_coef"] * h
            parts = policy_loss(logp, old, adv, mask, eps_low=loss_cfg["eps_low"], eps_high=loss_cfg["eps_high"],
                                aggregation=loss_cfg["aggregation"], max_len=2, token_weight=weight, extra=extra)
            self._descend(parts.loss, rows, logp_full)
            losses.append(parts.loss.item())
        rec = {K.LOSS: sum(losses) / len(losses), K.SIM_EXPECTED: 1.0}
        return self._finish_step(s, rec)

    def _answers(self, modes: torch.Tensor) -> list[list[str | None]]:
        """The samples' "parsed answers" (their mode index): only reward transforms (majority
        vote) read them, so other strategies get a shared list of None."""
        if self.strategy.reward:
            return [[str(m) for m in row] for row in modes.tolist()]
        B, G = modes.shape
        if self._no_answers is None or len(self._no_answers) != B:
            self._no_answers = [[None] * G for _ in range(B)]
        return self._no_answers

    @property
    def history(self) -> SuccessHistory:
        """Each training problem's success record (``workbench.metrics.SuccessHistory``), as
        the LLM session keeps it; brought up to date from the recorded samples on access."""
        for s, rows, _, _, _, c in self._samples[self._history_upto:]:
            self._history.update(s, [self.world.problem_ids[i] for i in rows], c, self.config.group_size)
        self._history_upto = len(self._samples)
        return self._history

    def _uses_history(self) -> bool:
        return any(getattr(p, "history", False) for _, p in self.strategy.calibrations)

    def _check_exchangeable(self) -> None:
        st = self.strategy
        why = []
        if st.reward:
            why.append(f"its reward transform {st.reward[0][0].name!r} depends on more than the sampled mode")
        if st.token:
            why.append(f"its token calibration(s) {', '.join(p.name for p, _ in st.token)} choose tokens at random")
        for piece, p in st.calibrations:
            if getattr(p, "history", False):
                why.append(f"{piece.name}.history uses the per-problem sampling history")
        if why:
            raise ConfigError(f"expected_step() cannot take strategy {st.name!r}: " + "; ".join(why)
                              + ". Use step() (sampled updates) for it, or drop those pieces")

    def _canonical_advantages(self, levels: np.ndarray, s: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(comps [K, L], adv [L, K]): every composition of the other G-1 rewards as counts per
        level, and the advantage of a focal sample with reward levels[l] in a group with the
        others comps[k], computed by the strategy itself (cached per strategy: the accepted
        strategies are pure functions of the group's rewards)."""
        G = self.config.group_size
        key = (G, tuple(levels.tolist()))
        if self._canon is not None and self._canon[0] is self.strategy and self._canon[1] == key:
            return self._canon[2], self._canon[3]
        comps = _compositions(G - 1, len(levels))                                              # [K, L]
        L, K = len(levels), comps.shape[0]
        lv = torch.as_tensor(levels, dtype=torch.float32)
        others = torch.stack([torch.repeat_interleave(lv, comps[k].long()) for k in range(K)])   # [K, G-1]
        rewards = torch.cat([lv[:, None, None].expand(L, K, 1), others[None].expand(L, K, G - 1)], -1).reshape(L * K, G)
        batch = GroupBatch(problem_ids=[f"canonical-{i}" for i in range(L * K)], rewards=rewards, correct=rewards > 0,
                           parsed=torch.ones(L * K, G, dtype=torch.bool), answers=[[None] * G for _ in range(L * K)],
                           entropy=torch.zeros(L * K, G), step=s, history=None, seed=self.config.seed)
        adv = self.strategy.advantages(batch).advantage[:, 0].double().reshape(L, K)
        self._canon = (self.strategy, key, comps, adv)
        return comps, adv

    def _descend(self, loss: torch.Tensor, rows: torch.Tensor, logp_full: torch.Tensor) -> None:
        """One optimiser step on the policy's parameters from ``loss``, whose problems are
        ``rows`` [R] with current log-probabilities ``logp_full`` [R, M].

        ``update = "gradient"``: the plain gradient. ``"natural"``: the natural gradient,
        delta = (F + damping*I)^-1 g in parameter space, F = mean over the rows of
        J_r^T (diag(pi_r) - pi_r pi_r^T) J_r the Fisher information of the rows' softmaxes
        (J_r the logits' Jacobian). With kappa = 0 the logit step is then the
        importance-weighted advantage itself, whose expectation gives
        pi_new ∝ pi_old * exp(lr * A): every mode with the same advantage is scaled alike."""
        params = self.policy.parameters()
        for p in params:
            p.grad = None
        loss.backward()
        if self.config.update == "natural":
            self._natural(rows, logp_full.detach().exp())
        if self.optimizer is not None:
            self.optimizer.step()
            return
        with torch.no_grad():
            for p in params:
                p.sub_(self.config.lr * p.grad)

    @torch.no_grad()
    def _natural(self, rows: torch.Tensor, probs: torch.Tensor) -> None:
        """Replace the parameters' gradients (rows of a, and s) by the natural gradient."""
        pi = self.policy
        R, M = probs.shape
        ka, ks = pi.k_private, pi.k_shared
        fisher = torch.diag_embed(probs) - probs[:, :, None] * probs[:, None, :]               # [R, M, M]
        fisher = fisher / R                                                                     # the loss is a mean over rows
        n = (R + 1) * M
        H = torch.zeros(n, n, dtype=torch.float64)
        H[: R * M, : R * M] = torch.block_diag(*(ka * ka * fisher))                             # a-a blocks
        cross = (ka * ks * fisher).reshape(R * M, M)                                            # [R*M, M] a-s blocks
        H[: R * M, R * M:] = cross
        H[R * M:, : R * M] = cross.T
        H[R * M:, R * M:] = ks * ks * fisher.sum(0)                                             # s-s block
        H += (self.config.natural_damping / R) * torch.eye(n, dtype=torch.float64)
        g = torch.cat([pi.a.grad[rows].reshape(-1), pi.s.grad])                                # [(R+1)*M]
        delta = torch.linalg.solve(H, g)
        pi.a.grad.zero_()
        pi.a.grad[rows] = delta[: R * M].reshape(R, M)
        pi.s.grad.copy_(delta[R * M:])

    def _finish_step(self, s: int, rec: dict) -> dict:
        pi = self.policy
        exact = _exact_columns(self, pi.a[None], pi.s[None], self._stack)
        rec.update({k: float(v[0]) for k, v in exact.items()})
        return self._commit(s, rec)

    def _commit(self, s: int, rec: dict) -> dict:
        """Record step ``s`` (its scalars ``rec``): the store, and an evaluation when one is due."""
        self.step_count = s
        record = {"step": s, **rec}
        self.records.append(record)
        if self._store is not None and s % self.config.log_every == 0:
            self._write_step(record)
        if self.config.eval_every and s % self.config.eval_every == 0:
            self.evaluate()
        return record

    def run(self, n: int, expected: bool = False) -> Iterator[dict]:
        """Yield one record per step for ``n`` steps (sampled, or exact with ``expected``)."""
        for _ in range(int(n)):
            yield self.expected_step() if expected else self.step()

    def train(self, n: int, expected: bool = False) -> "Simulator":
        """Run ``n`` steps without yielding (returns self, for chaining)."""
        for _ in self.run(n, expected):
            pass
        return self

    # ------------------------------------------------------------------ exact quantities
    def mode_probs(self) -> np.ndarray:
        """pi(m | p) now: [P, M] (float64)."""
        return self.policy.probs()

    def success(self) -> np.ndarray:
        """Probability that one sample is correct, per problem: [P]."""
        return pol.success(self.policy.probs(), self.world.correct)

    def pass_at_k(self, k: int | float) -> np.ndarray:
        """Exact pass@k = 1 - (1 - p)^k per problem: [P]."""
        return pol.pass_at_k(self.policy.probs(), self.world.correct, k)

    def entropy(self) -> np.ndarray:
        """Full-distribution entropy per problem (nats): [P]."""
        return pol.entropy(self.policy.probs())

    def mode_entropy(self) -> np.ndarray:
        """Entropy of the distribution of correct samples over the correct modes, per problem: [P]."""
        return pol.mode_entropy(self.policy.probs(), self.world.correct)

    def expected_distinct(self, n: int) -> np.ndarray:
        """Expected number of distinct correct modes among n samples, per problem: [P]."""
        return pol.expected_distinct(self.policy.probs(), self.world.correct, n)

    @property
    def correct(self) -> np.ndarray:
        """[P, M] bool: which modes are correct."""
        return self.world.correct

    # ------------------------------------------------------------------ evaluation and the store
    def splits(self) -> dict[str, np.ndarray]:
        """Evaluation splits as problem indices: 'eval' = held-out problems (all problems when
        none is held out) and 'seen' = training problems (only when some are held out)."""
        w = self.world
        if len(w.heldout_ids):
            return {"eval": w.heldout_ids, "seen": w.train_ids}
        return {"eval": w.train_ids}

    def evaluate(self) -> dict[str, float]:
        """Evaluate every split now (exact summary + n-sample draw rows); store it when attached.
        Returns the merged summary ('seen' keys prefixed with 'seen/', as the engine does)."""
        return self._evaluate(label="policy")

    def _evaluate(self, label: str) -> dict[str, float]:
        probs = self.policy.probs()
        merged: dict[str, float] = {}
        for split, idx in self.splits().items():
            base_rows = None if label == "base" else self._base[split]
            summary, rows = evaluate_split(probs[idx], self.base_probs[idx], self.world.correct[idx],
                                           self._uniforms[idx], [self.world.problem_ids[i] for i in idx], base_rows)
            if label == "base":
                self._base[split] = rows
            ev = {"step": self.step_count, "label": label, "split": split, "summary": summary, "problems": rows}
            self.evaluations.append(ev)
            if self._store is not None:
                self._write_eval(ev)
            merged.update({("" if split == "eval" else f"{split}/") + k: v for k, v in summary.items()})
        return merged

    def to_store(self, store=None, workspace: str = "runs", name: str | None = None) -> str:
        """Write the run so far (steps, evaluations, strategy events) to a run store and keep
        writing every later step and evaluation there. Returns the run id."""
        from workbench.sim.record import attach

        return attach(self, store, workspace, name)

    def _write_step(self, record: dict) -> None:
        from workbench.sim.record import write_step

        last = self._samples[-1] if self._samples and self._samples[-1][0] == record["step"] else None
        write_step(self, record, last)

    def _write_eval(self, ev: dict) -> None:
        self._store.write_evaluation(self.run_id, ev["step"], ev["label"], ev["split"], ev["summary"], ev["problems"])

    def __repr__(self) -> str:
        c = self.config
        return (f"Simulator(P={c.problems}, M={c.modes}, coupling={c.coupling}, G={c.group_size}, "
                f"strategy={c.strategy!r}, step={self.step_count})")


def _compositions(n: int, parts: int) -> torch.Tensor:
    """All ways to write n as an ordered sum of ``parts`` non-negative integers: [K, parts] (float64)."""
    count = math.comb(n + parts - 1, parts - 1)
    if count > 200_000:
        raise ConfigError(f"expected_step(): {count} group compositions for {parts} reward levels and G = {n + 1}; "
                          "use fewer distinct reward values or a smaller group")
    out = []
    for bars in itertools.combinations(range(n + parts - 1), parts - 1):
        prev, row = -1, []
        for b in bars:
            row.append(b - prev - 1)
            prev = b
        row.append(n + parts - 1 - prev - 1)
        out.append(row)
    return torch.tensor(out, dtype=torch.float64)


# ---------------------------------------------------------------------- the sampled step, for S runs at once
class _Stack(NamedTuple):
    """Per-run constants stacked along a leading dimension S (S = 1 for a lone Simulator)."""

    base: torch.Tensor       # [S, P, M] float64 log pi_base
    rewards: torch.Tensor    # [S, P, M] float32
    correct: torch.Tensor    # [S, P, M] bool


def sampled_step(sims: list[Simulator], a: torch.Tensor, shared: torch.Tensor, stack: _Stack,
                 descend: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]) -> list[dict]:
    """One sampled training step of S runs that share everything but their seed (and so
    their world): ``a`` [S, P, M] and ``shared`` [S, M] are their parameters (with grad),
    ``descend(loss, rows [S, B], logp_full [S, B, M])`` steps them. Each run draws its
    problems and samples from its own generator and gets the record it would get alone;
    the tensor work is done once for all. Returns the S records."""
    sim0 = sims[0]
    cfg, strategy, S = sim0.config, sim0.strategy, len(sims)
    B, G, M = cfg.prompts_per_step, cfg.group_size, stack.base.shape[-1]
    s = sim0.step_count + 1
    ka, ks = sim0.policy.k_private, sim0.policy.k_shared
    rows = torch.stack([sim._train[torch.randperm(len(sim._train), generator=sim.generator)[:B]]
                        for sim in sims])                                                      # [S, B]
    idx = rows[:, :, None].expand(S, B, M)                                                      # [S, B, M]
    base_rows = stack.base.gather(1, idx)                                                       # [S, B, M]

    def log_policy() -> torch.Tensor:
        return torch.log_softmax(base_rows + ka * a.gather(1, idx) + ks * shared[:, None, :], -1)   # [S, B, M]

    state = {"logp_full": log_policy()}                                                         # pi_old now (grad)
    logp_all = state["logp_full"].detach()                                                      # [S, B, M]
    probs = logp_all.exp()                                                                      # [S, B, M]
    modes = torch.stack([torch.multinomial(probs[i], G, replacement=True, generator=sim.generator)
                         for i, sim in enumerate(sims)])                                       # [S, B, G]
    rewards = stack.rewards.gather(1, idx).gather(2, modes)                                     # [S, B, G]
    correct = stack.correct.gather(1, idx).gather(2, modes)                                     # [S, B, G]
    ent_b = distribution_entropy(logp_all, probs=probs, masked_vocab=False)                 # [S, B]
    adv_bg, reward_bg = _advantages(sims, rows, modes, rewards, correct, ent_b, s)              # [S, B, G] each
    adv = adv_bg.double().reshape(-1, 1)                                                        # [S*N, 1]
    ref_logp = base_rows.gather(2, modes).reshape(-1, 1)                                        # [S*N, 1]
    mask = torch.ones_like(adv)                                                                 # [S*N, 1]
    loss_cfg = loss_settings(cfg.loss, strategy)
    updates = strategy.updates_per_batch(cfg.updates_per_batch)

    def forward(u: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if u > 0:
            state["logp_full"] = log_policy()
        lf = state["logp_full"]                                                                 # [S, B, M]
        ent = None
        if loss_cfg["entropy_coef"] != 0:
            ent = distribution_entropy(lf, masked_vocab=False)[:, :, None].expand(S, B, G).reshape(-1, 1)  # [S*N, 1]
        return lf.gather(2, modes).reshape(-1, 1), ent                                          # [S*N, 1]

    res = update(forward, adv, mask, strategy=strategy, loss=loss_cfg, updates=updates, max_len=1,
                 descend=lambda loss: descend(loss, rows, state["logp_full"]),
                 token_seeds=lambda u: [row_seed(sim.config.seed, "token", s, u) for sim in sims],
                 ref_logp=ref_logp, blocks=S, statistics=cfg.diagnostics)
    cols: dict[str, torch.Tensor] = {                                                           # each [S]
        K.REWARD_MEAN: rewards.reshape(S, -1).mean(-1),
        K.REWARD_TRANSFORMED_MEAN: reward_bg.reshape(S, -1).mean(-1),
        K.PASS1: correct.reshape(S, -1).float().mean(-1),
        K.LOSS: res.loss,
        K.ENTROPY: ent_b.mean(-1),
    }
    if cfg.diagnostics:
        old, A = res.old_logp.reshape(S, -1), adv.reshape(S, -1)                                # [S, N]
        all_c, all_w = correct.all(-1), ~correct.any(-1)                                        # [S, B]
        a64 = adv_bg.double().reshape(S, -1)                                                    # [S, N]
        zero = torch.zeros(S, dtype=torch.float64)
        cols.update({
            K.LOGP_ADV_COV: ((old - old.mean(-1, keepdim=True)) * (A - A.mean(-1, keepdim=True))).mean(-1),
            K.KL_OLD: res.kl_old,                       # before the last update, as the engine
            K.KL_REF: approx_kl(ref_logp, res.old_logp, mask, blocks=S),
            K.OFFPOLICY_ABS_LOGRATIO: zero,             # sampled from pi_old itself: exactly on-policy
            K.KL_SAMPLE_POLICY: zero,
            K.PARSE_ERROR_FRAC: zero,
            K.COMPLETION_LEN: zero + 1.0,
            K.FRAC_ALL_CORRECT: all_c.double().mean(-1),
            K.FRAC_ALL_WRONG: all_w.double().mean(-1),
            K.FRAC_MIXED: (~all_c & ~all_w).double().mean(-1),
            K.ADV_MEAN: a64.mean(-1),
            K.ADV_STD: a64.std(-1, correction=0),
            K.ADV_FRAC_ZERO: (a64.abs() <= 1e-8).double().mean(-1),
            **res.clip,
        })
    if strategy.token:
        cols[K.TOKEN_CALIBRATED] = res.token_selected / updates
    cols.update(_exact_columns(sim0, a.detach(), shared.detach(), stack))
    keys = list(cols)
    values = torch.stack([v.double() for v in cols.values()]).T.tolist()                       # [S][K]
    rows_np, modes_np = rows.numpy().astype(np.int32), modes.numpy().astype(np.int16)
    adv_abs, reward_mean, c = adv_bg.abs().mean(2).numpy(), rewards.mean(2).numpy(), correct.sum(2).numpy()
    out = []
    for i, sim in enumerate(sims):
        sim._samples.append((s, rows_np[i], modes_np[i], adv_abs[i], reward_mean[i], c[i]))
        out.append(sim._commit(s, dict(zip(keys, values[i]))))
    return out


def _advantages(sims, rows, modes, rewards, correct, ent_b, s: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The strategy's advantages and transformed rewards, [S, B, G] each: in one call over
    all S*B groups when the strategy treats groups independently, else one call per run."""
    sim0 = sims[0]
    S, B, G = modes.shape
    strategy, cfg = sim0.strategy, sim0.config

    def group_batch(parts, r, c, m, e, history, seed) -> GroupBatch:
        ids = [sim.world.problem_ids[i] for sim, rw in parts for i in rw.tolist()]
        answers = [a for sim, mo in zip((p[0] for p in parts), m) for a in sim._answers(mo)]
        return GroupBatch(problem_ids=ids, rewards=r.reshape(-1, G), correct=c.reshape(-1, G),
                          parsed=torch.ones(r.numel() // G, G, dtype=torch.bool), answers=answers,
                          entropy=e.reshape(-1, 1).expand(-1, G).float(), step=s, history=history, seed=seed)

    if S == 1 or _groupwise(strategy):
        history = sim0.history if S == 1 and sim0._uses_history() else None
        out = strategy.advantages(group_batch(list(zip(sims, rows)), rewards, correct, modes, ent_b, history,
                                              cfg.seed))
        return out.advantage.reshape(S, B, G), out.reward.reshape(S, B, G)
    outs = [strategy.advantages(group_batch([(sim, rows[i])], rewards[i], correct[i], modes[i:i + 1], ent_b[i],
                                            sim.history if sim._uses_history() else None, sim.config.seed))
            for i, sim in enumerate(sims)]
    return torch.stack([o.advantage for o in outs]), torch.stack([o.reward for o in outs])


def _groupwise(strategy: Strategy) -> bool:
    """Whether each group's advantages depend on that group alone (so S runs' groups can go
    through the strategy in one call): not with seeded random rewards, per-problem history,
    or factors normalised over the batch."""
    if any(piece.name == "random" for piece, _ in strategy.reward):
        return False
    return not any(getattr(p, "history", False) or getattr(p, "renormalize", False) for _, p in strategy.calibrations)


def _exact_columns(sim: Simulator, a: torch.Tensor, shared: torch.Tensor, stack: _Stack) -> dict[str, torch.Tensor]:
    """The exact success and entropy of the current policies on the training and held-out
    problems: {key: [S]}."""
    pi = sim.policy
    with torch.no_grad():
        logp = torch.log_softmax(stack.base + pi.k_private * a + pi.k_shared * shared[:, None, :], -1)   # [S, P, M]
        p = logp.exp()
        succ = (p * stack.correct).sum(-1)                                                      # [S, P]
        ent = distribution_entropy(logp, probs=p, masked_vocab=False)                       # [S, P]
    R = len(sim._train)                        # the training problems are the first R (build_world)
    out = {K.SIM_SUCCESS: succ[:, :R].mean(-1), K.SIM_ENTROPY: ent[:, :R].mean(-1)}
    if R < succ.shape[1]:
        out[K.SIM_HELDOUT_SUCCESS] = succ[:, R:].mean(-1)
        out[K.SIM_HELDOUT_ENTROPY] = ent[:, R:].mean(-1)
    return out
