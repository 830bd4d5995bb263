"""Tasks for real models: math-verify checking, answer-level and solution-path mode keys,
Countdown's chat format, the MATH-style sample, end to end on a random Qwen2-style model
with a chat template (built from a config: no download)."""

from __future__ import annotations

import pytest

from workbench.errors import ConfigError
from workbench.tasks import get_task
from workbench.tasks.answers import equation_results, last_boxed, math_verify_available, solution_path_key
from workbench.tasks.base import Problem

GSM = Problem("g1", {"question": "Tom has 3 boxes of 4 apples and buys 30 more. How many apples?",
                     "answer": "3*4=12\n12+30=42\n#### 42", "gold": "42"})

# hand-written completions of the same problem
SAME_PATH_A = "He has 3*4 = 12 apples in boxes. Then 12 + 30 = 42.\n#### 42"
SAME_PATH_B = "First the boxes: <<3*4=12>>12. Adding the new ones, 30+12=42 apples in all.\n#### 42"
OTHER_PATH = "Buying 30 first: 30 + 3 = 33, then 33 + 3*3 = 42.\n#### 42"
WRONG = "3 + 4 = 7 and 7 + 30 = 37.\n#### 37"


def test_mode_keys_on_hand_written_gsm8k_completions():
    path = get_task("gsm8k", mode_key="solution_path")
    a, b, c, w = (path.verify(GSM, t) for t in (SAME_PATH_A, SAME_PATH_B, OTHER_PATH, WRONG))
    assert a.correct and b.correct and c.correct and not w.correct
    assert a.mode_key == b.mode_key == "12|42"          # same intermediate results, other order and wording
    assert c.mode_key != a.mode_key and c.mode_key == "33|42"
    assert w.mode_key is None and w.answer == "37"      # wrong: no mode, but its final answer is kept
    ans = get_task("gsm8k", mode_key="answer")
    assert {ans.verify(GSM, t).mode_key for t in (SAME_PATH_A, SAME_PATH_B, OTHER_PATH)} == {"42"}
    text = get_task("gsm8k")                            # the default: normalised text, every completion its own
    assert len({text.verify(GSM, t).mode_key for t in (SAME_PATH_A, SAME_PATH_B, OTHER_PATH)}) == 3
    assert solution_path_key("The answer is 42.", "42") == "no-equations:42"
    assert equation_results("x = 1,200 and y = -3.50; z=2") == ["1200", "-3.5", "2"]
    with pytest.raises(ConfigError, match="mode_key = 'paths'.*text, answer, solution_path"):
        get_task("gsm8k", mode_key="paths")


def test_math_verify_checks_gsm8k_and_math_answers():
    assert math_verify_available()  # a dev dependency: the suite checks the verifier it ships with
    frac = "The share is 3/4 of the pizza, so\n#### \\frac{3}{4}"
    gold_frac = Problem("g2", {"question": "", "answer": "#### 0.75", "gold": "0.75"})
    assert get_task("gsm8k").verify(gold_frac, frac).correct                 # auto: math-verify
    assert not get_task("gsm8k", verifier="builtin").verify(gold_frac, frac).correct
    assert get_task("gsm8k", verifier="builtin").verify(GSM, "so #### $42.00").correct

    math = get_task("math")
    prob = Problem("m1", {"problem": "", "gold": "x^2+1", "solution": ""})
    assert math.verify(prob, "Expanding gives \\boxed{1+x^2}.").correct       # symbolic equality
    assert not get_task("math", verifier="builtin").verify(prob, "\\boxed{1+x^2}").correct
    half = Problem("m2", {"problem": "", "gold": "\\frac{1}{2}", "solution": ""})
    for task in (math, get_task("math", verifier="builtin")):                 # both: 0.5 = 1/2
        assert task.verify(half, "so the probability is \\boxed{0.5}").correct
        assert task.verify(half, "\\boxed{\\dfrac{1}{2}}").mode_key == "1/2"
        wrong = task.verify(half, "\\boxed{\\frac{1}{3}}")
        assert wrong.parsed and not wrong.correct and wrong.answer == "1/3"
        assert not task.verify(half, "the answer is 1/2").parsed              # no \boxed{}: unparsed
    assert last_boxed("\\boxed{a} then \\boxed{\\frac{1}{\\sqrt{2}}}") == "\\frac{1}{\\sqrt{2}}"


def test_math_sample_file_is_consistent():
    task = get_task("math")
    probs = task.load_split("train") + task.load_split("eval")
    assert len(probs) == 20 and len(task.load_split("eval")) == 5
    for p in probs:  # each record's worked solution is graded correct against its own answer
        assert task.verify(p, p.data["solution"]).correct, p.data


def test_countdown_chat_style_and_format_reward():
    task = get_task("countdown", style="chat", format_reward=0.1)
    p = task.load_split("eval")[0]
    sol = task.solutions(p)[0]
    assert "<answer>" in task.instruction(p) and str(p.data["target"]) in task.instruction(p)
    assert task.prompt(p).endswith("<think>") and task.max_new_tokens == 256
    right = task.verify(p, f"<think>try {sol}</think>\n<answer> {sol} = {p.data['target']} </answer>")
    assert right.correct and right.reward == 1.0 and right.mode_key == task.verify(p, f"<answer>{sol}</answer>").mode_key
    wrong = task.verify(p, "<think></think><answer>2*2</answer>")
    assert not wrong.correct and wrong.parsed and wrong.reward == pytest.approx(0.1)
    assert not task.verify(p, sol).parsed                                     # no tags: unparsed, reward 0
    assert get_task("countdown", style="chat").verify(p, "<answer>2*2</answer>").reward == 0.0
    assert get_task("countdown").verify(p, sol).correct                       # compact style unchanged
    with pytest.raises(ConfigError, match="style"):
        get_task("countdown", style="zero")


@pytest.fixture(scope="module")
def qwen2_chat_dir(tmp_path_factory):
    """A random-weight Qwen2-style model with a character tokenizer and a ChatML template."""
    import string

    from transformers import Qwen2Config, Qwen2ForCausalLM

    from workbench.models.tokenizer import build_char_tokenizer

    out = tmp_path_factory.mktemp("qwen2-chat")
    tok = build_char_tokenizer([string.printable])
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                      tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    Qwen2ForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.mark.parametrize("task,params", [("math", {"mode_key": "solution_path"}),
                                         ("gsm8k", {"mode_key": "answer"}),
                                         ("countdown", {"style": "chat", "format_reward": 0.1})])
def test_real_model_tasks_end_to_end(qwen2_chat_dir, tmp_path, task, params):
    from workbench.session import Session
    from workbench.store import RunStore

    sess = Session(workspace=str(tmp_path), steps=1, **{
        "model.name_or_path": str(qwen2_chat_dir), "model.chat_template": "on", "task.name": task,
        "task.params": params, "rollout.prompts_per_step": 2, "rollout.group_size": 2,
        "rollout.max_new_tokens": 12, "eval.n": 2, "eval.max_problems": 2, "eval.seen_problems": 0,
        "checkpoint_every": 0, "eval.bank_cap": 1})
    def squash(text: str) -> str:  # the character tokenizer does not keep whitespace
        return "".join(text.split())

    prompt = squash(sess.tokenizer.decode(sess._prompt_ids(sess.train_problems[:1])[0]))
    assert prompt.startswith("<|im_start|>user") and prompt.endswith("<|im_start|>assistant")
    assert squash(sess.task.instruction(sess.train_problems[0])) in prompt
    records = list(sess.run())
    assert [r["step"] for r in records] == [1]
    store = RunStore(tmp_path)
    assert store.get_run(sess.run_id)["status"] == "finished"
    assert {e["label"] for e in store.evaluations(sess.run_id)} == {"base", "policy"}
    assert store.get_run(sess.run_id)["config"]["task"]["params"] == params
