"""Rollouts: batched sampling with log-probs and entropy, and teacher-forced scoring."""

from workbench.rollout.sampling import (
    LogitsProcessor,
    Rollout,
    left_pad,
    positions,
    rollout_from_texts,
    sample,
    sampling_graph_bytes,
    token_logprobs,
)

__all__ = ["LogitsProcessor", "Rollout", "left_pad", "positions", "rollout_from_texts", "sample",
           "sampling_graph_bytes", "token_logprobs"]
