import pytest
import torch

from workbench.errors import ConfigError, UnknownNameError
from workbench.strategies import GroupBatch, build_strategy


def _batch(rewards):
    r = torch.tensor(rewards, dtype=torch.float32)
    B, G = r.shape
    return GroupBatch(problem_ids=[f"p{b}" for b in range(B)], rewards=r, correct=r > 0, parsed=torch.ones(B, G, dtype=torch.bool),
                      answers=[[None] * G for _ in range(B)], entropy=torch.zeros(B, G))


def test_grpo_hand_computed():
    out = build_strategy("grpo").advantages(_batch([[1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 0]]))
    # group 0: mean 0.25, population std sqrt(0.25*0.75)=0.4330
    s = (0.25 * 0.75) ** 0.5
    assert out.advantage[0].tolist() == pytest.approx([0.75 / s, -0.25 / s, -0.25 / s, -0.25 / s], rel=1e-4)
    assert out.advantage[1].abs().max().item() == 0.0   # all correct -> no gradient
    assert out.advantage[2].abs().max().item() == 0.0   # all wrong -> no gradient
    assert out.advantage[3].tolist() == pytest.approx([1, -1, 1, -1], rel=1e-4)
    assert torch.equal(out.reward, torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 0]], dtype=torch.float32))


def test_grpo_group_of_two():
    out = build_strategy("grpo").advantages(_batch([[1, 0]]))
    assert out.advantage[0].tolist() == pytest.approx([1.0, -1.0], rel=1e-4)


def test_unknown_strategy_and_parameter_messages():
    with pytest.raises(UnknownNameError, match="valid strategy names: .*grpo"):
        build_strategy("ppo_magic")
    with pytest.raises(ConfigError, match="valid parameters of grpo: grpo.eps"):
        build_strategy("grpo", {"grpo.epsilon": 1})
    assert build_strategy("grpo", {"grpo.eps": "0.5"}).estimator[1].eps == 0.5
