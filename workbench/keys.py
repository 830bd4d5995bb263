"""The names of the logged metrics, in one place (torch-free).

The engine, the simulator, the CLI and the dashboard read and write scalars under these
keys; importing them instead of retyping the strings keeps the four in step. What each
quantity means: docs/metrics.md. Namespaces: ``train/`` (per training step), ``eval/``
(evaluation summaries), ``boundary/`` and ``collapse/`` (against the base model),
``sim/`` (the simulator's exact quantities).
"""

from __future__ import annotations

# ---------------------------------------------------------------- per training step
REWARD_MEAN = "train/reward_mean"
REWARD_TRANSFORMED_MEAN = "train/reward_transformed_mean"
PASS1 = "train/pass@1"
PARSE_ERROR_FRAC = "train/parse_error_frac"
LOSS = "train/loss"
GRAD_NORM = "train/grad_norm"
ENTROPY = "train/entropy"
LOGP_ADV_COV = "train/logp_adv_cov"
KL_OLD = "train/kl_old"
KL_REF = "train/kl_ref"
KL_SAMPLE_POLICY = "train/kl_sample_policy"
OFFPOLICY_ABS_LOGRATIO = "train/offpolicy_abs_logratio"
COMPLETION_LEN = "train/completion_len"
TRUNCATED_FRAC = "train/truncated_frac"
NUM_TOKENS = "train/num_tokens"
TOKEN_CALIBRATED = "train/token_calibrated"
CLIP_FRAC_LOW = "train/clip_frac_low"
CLIP_FRAC_HIGH = "train/clip_frac_high"
CLIP_FRAC = "train/clip_frac"
FRAC_ALL_CORRECT = "train/frac_all_correct"
FRAC_ALL_WRONG = "train/frac_all_wrong"
FRAC_MIXED = "train/frac_mixed"
ADV_MEAN = "train/adv_mean"
ADV_STD = "train/adv_std"
ADV_FRAC_ZERO = "train/adv_frac_zero"

CLIP_KEYS = (CLIP_FRAC_LOW, CLIP_FRAC_HIGH, CLIP_FRAC)
KL_KEYS = (KL_OLD, KL_REF, KL_SAMPLE_POLICY)
GROUP_KEYS = (FRAC_ALL_CORRECT, FRAC_MIXED, FRAC_ALL_WRONG)

# ---------------------------------------------------------------- evaluation summaries
EVAL_PASS = "eval/pass@"                  # + k
EVAL_PASS1 = EVAL_PASS + "1"
EVAL_MEAN_ENTROPY = "eval/mean_entropy"
EVAL_MEAN_DISTINCT_CORRECT_MODES = "eval/mean_distinct_correct_modes"
EVAL_MEAN_EFF_MODES = "eval/mean_eff_modes"
EVAL_FRAC_UNSOLVED = "eval/frac_unsolved"
EVAL_PARSE_ERROR_FRAC = "eval/parse_error_frac"
EVAL_N = "eval/n"
EVAL_NUM_PROBLEMS = "eval/num_problems"
EVAL_MEAN_LENGTH = "eval/mean_length"
EVAL_MEAN_SUCCESS = "eval/mean_success"
BOUNDARY = "boundary/"                    # + gained, lost, kept, never (+ _c2)
BOUNDARY_GAINED = "boundary/gained"
BOUNDARY_REPORT_K = "boundary/report_k"
BOUNDARY_PASSK_DELTA = "boundary/passk_delta@"   # + k
COLLAPSE_MEAN_INDEX = "collapse/mean_index"

# ---------------------------------------------------------------- the simulator's exact quantities
SIM_SUCCESS = "sim/success"
SIM_ENTROPY = "sim/entropy"
SIM_HELDOUT_SUCCESS = "sim/heldout_success"
SIM_HELDOUT_ENTROPY = "sim/heldout_entropy"
SIM_EXPECTED = "sim/expected"


def eval_pass(k: int) -> str:
    """The evaluation summary's key of pass@k."""
    return f"{EVAL_PASS}{int(k)}"


def all_keys() -> set[str]:
    """Every fixed key defined here (the prefixes to which a k or a suffix is appended excluded)."""
    return {v for k, v in globals().items() if k.isupper() and isinstance(v, str) and not v.endswith(("@", "/"))}
