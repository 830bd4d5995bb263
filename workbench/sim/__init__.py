"""An instant RLVR simulator for teaching: the engine's strategies on a softmax policy.

P problems × M solution modes (some correct, some wrong); logits from features shared
across problems with a tunable overlap (``coupling``: 0 = tabular, 1 = fully shared);
groups of G sampled per problem and updated through the very same strategy registry
(``build_strategy(...).advantages``) and loss (``workbench.losses.policy_loss``, one
"token" per sample) as the LLM engine. Exact quantities are closed forms of the policy:
mode probabilities, pass@k = 1 - (1 - p)^k, entropies. Runs can be written to the run
store (``Simulator.to_store``) so the dashboard shows them.

    from workbench.sim import SimConfig, Simulator, scenarios
    sim = Simulator(SimConfig(coupling=0.5, strategy="grpo"))   # or Simulator(scenarios.heldout())
    for rec in sim.run(500):          # a generator of step records
        ...
    sim.expected_step()                # the exact infinite-batch update
    sim.pass_at_k(64), sim.mode_probs(), sim.entropy()
    sim.to_store(workspace="runs")     # the dashboard shows it like an engine run

    runs = SimBatch(SimConfig(strategy="iac"), seeds=range(10))   # 10 runs stepped together
    runs.train(2000); runs.series("sim/success")                  # [10, 2000]

Importing this package has no side effects.
"""

from workbench.sim import scenarios
from workbench.sim.batch import SimBatch
from workbench.sim.config import SimConfig, World, build_world
from workbench.sim.engine import Simulator

__all__ = ["SimBatch", "SimConfig", "Simulator", "World", "build_world", "scenarios"]
