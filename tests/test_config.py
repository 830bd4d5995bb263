import math

import pytest

from workbench.config import RunConfig
from workbench.errors import ConfigError


def test_defaults_validate_and_round_trip():
    cfg = RunConfig().validate()
    again = RunConfig.from_dict(cfg.to_dict())
    assert again == cfg


@pytest.mark.parametrize(
    "override, field",
    [
        ({"rollout.group_size": 1}, "rollout.group_size"),
        ({"optim.lr": -1e-4}, "optim.lr"),
        ({"optim.lr": float("nan")}, "optim.lr"),
        ({"loss.aggregation": "mean"}, "loss.aggregation"),
        ({"lora.rank": 0}, "lora.rank"),
        ({"eval.n": 0}, "eval.n"),
        ({"rollout.reuse_forward_mb": -1}, "rollout.reuse_forward_mb"),
    ],
)
def test_impossible_values_name_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        RunConfig().override(override).validate()


def test_eval_n_smaller_than_largest_k():
    with pytest.raises(ConfigError, match=r"eval\.n = 8 is smaller than the largest k"):
        RunConfig().override({"eval.n": 8, "eval.ks": [1, 4, 16]}).validate()


def test_boundary_k_defaults_to_8_and_must_not_exceed_n():
    assert RunConfig().validate().eval.resolved_boundary_k() == 8
    assert RunConfig().override({"eval.n": 4}).validate().eval.resolved_boundary_k() == 4   # 0 = min(8, n)
    assert RunConfig().override({"eval.boundary_k": 16}).validate().eval.resolved_boundary_k() == 16
    with pytest.raises(ConfigError, match=r"eval\.boundary_k = 16 is larger than eval\.n = 8.*Lower eval\.boundary_k"):
        RunConfig().override({"eval.n": 8, "eval.boundary_k": 16}).validate()
    with pytest.raises(ConfigError, match=r"eval\.boundary_k"):
        RunConfig().override({"eval.boundary_k": -1}).validate()


def test_override_parses_cli_strings():
    cfg = RunConfig().override({"rollout.group_size": "4", "loss.eps_high": "inf", "eval.ks": "[1, 2]",
                                "task.params": '{"path": "x.jsonl"}'})
    assert cfg.rollout.group_size == 4
    assert math.isinf(cfg.loss.eps_high)
    assert cfg.eval.ks == [1, 2]
    assert cfg.task.params == {"path": "x.jsonl"}


def test_unknown_fields_list_the_valid_ones():
    with pytest.raises(ConfigError, match="rollout has .*group_size"):
        RunConfig().override({"rollout.groupsize": 4})
    with pytest.raises(ConfigError, match="unknown config field"):
        RunConfig.from_dict({"rollout": {"nope": 1}})
    with pytest.raises(ConfigError, match="not a valid int"):
        RunConfig().override({"rollout.group_size": "eight"})
