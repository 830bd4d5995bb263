"""Metrics: pure functions of tensors, arrays and records (definitions as in docs/metrics.md).

Shape glossary (used by every shape comment in this package):
    B  prompts (groups) in a batch
    G  samples per prompt (group size)
    N  sequences = B·G (or banked modes, in ``sharpening``)
    T  tokens per sequence (generated positions; ``mask`` marks the valid ones)
    V  vocabulary size
    P  problems (an evaluation set)
    K  values of k on a pass@k curve

Conventions:
  * Log dicts are flat and namespaced: ``train/…``, ``collapse/…``, ``boundary/…``,
    ``sharpen/…``.  Per-problem records (``mode_stats``) are plain dicts.
  * Undefined is ``None``, never 0: a mean over an empty set, the mode entropy of a
    problem with no correct sample, a collapse index involving one.  The count next to it
    says why.  In numpy arrays, where ``None`` cannot go, undefined is NaN (pass@k with
    k > n).  Exception, by design: token means over an empty mask are 0.0 (a step with no
    valid token still logs a number).
  * Bad input raises ``workbench.errors.ConfigError`` (a ``ValueError``) naming the cause.
  * Importing this package has no side effects.
"""

from workbench.metrics.boundary import boundary_counts, boundary_summary, passk_delta
from workbench.metrics.clip import clip_fractions
from workbench.metrics.entropy import distribution_entropy, logprob_advantage_cov, masked_mean, token_entropy
from workbench.metrics.groups import SuccessHistory, advantage_stats, group_split
from workbench.metrics.kl import approx_kl, distribution_kl, importance_ratio, kl_k3, log_ratio
from workbench.metrics.modes import (
    collapse_index,
    collapse_record,
    collapse_summary,
    expected_distinct,
    index_from_diversity,
    matched_collapse,
    mode_stats,
    rarefied_distinct,
)
from workbench.metrics.passk import default_ks, pass_at_k, pass_at_k_curve, pass_at_k_matrix
from workbench.metrics.sharpening import (
    oversharpening_summary,
    per_problem_logratios,
    sequence_logprobs,
)

__all__ = [
    "SuccessHistory",
    "advantage_stats",
    "approx_kl",
    "boundary_counts",
    "boundary_summary",
    "clip_fractions",
    "collapse_index",
    "collapse_record",
    "collapse_summary",
    "default_ks",
    "distribution_entropy",
    "distribution_kl",
    "expected_distinct",
    "group_split",
    "importance_ratio",
    "index_from_diversity",
    "kl_k3",
    "log_ratio",
    "logprob_advantage_cov",
    "masked_mean",
    "matched_collapse",
    "mode_stats",
    "oversharpening_summary",
    "pass_at_k",
    "pass_at_k_curve",
    "pass_at_k_matrix",
    "passk_delta",
    "per_problem_logratios",
    "rarefied_distinct",
    "sequence_logprobs",
    "token_entropy",
]
