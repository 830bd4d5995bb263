"""Unit tests for workbench.tasks: hand-computed verdicts, mode keys, splits and the registry."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import pytest

from workbench.errors import ConfigError, TaskDataError, UnknownNameError, VerifierError
from workbench.tasks import TASKS, Problem, Verdict, get_task, list_tasks, write_splits
from workbench.tasks.countdown import Countdown
from workbench.tasks.expr import all_solutions, parse
from workbench.tasks.gsm8k import GSM8K
from workbench.tasks.two_primes import TwoPrimes


def tp(n: int) -> Problem:
    return Problem(f"tp-{n:03d}", {"n": n})


def cd(numbers: list[int], target: int) -> Problem:
    return Problem("cd-test", {"numbers": numbers, "target": target})


# ---------------------------------------------------------------- two_primes


def test_two_primes_prompt_and_verdicts():
    t, p = TwoPrimes(), tp(40)
    assert t.prompt(p) == "N=040:"
    ok = t.verify(p, "3+37")
    assert (ok.correct, ok.parsed, ok.reward, ok.mode_key) == (True, True, 1.0, "3+37")
    assert t.verify(p, " 37 + 3 \n").mode_key == "3+37"  # reversed order, same mode
    assert t.verify(p, "11+29").mode_key == "11+29"
    wrong_sum = t.verify(p, "3+36")
    assert (wrong_sum.correct, wrong_sum.parsed, wrong_sum.reward, wrong_sum.mode_key) == (False, True, 0.0, None)
    not_prime = t.verify(p, "35+5")  # sums to 40, but 35 = 5*7
    assert not not_prime.correct and not_prime.parsed and not_prime.answer == "5+35"
    for garbage in ["", "hello", "3+37+1", "-3+43", "3 37", "3+", "+37", "3+37x"]:
        v = t.verify(p, garbage)
        assert (v.parsed, v.correct, v.answer, v.mode_key) == (False, False, None, None), garbage


def test_two_primes_solutions_by_hand():
    t = TwoPrimes()
    assert t.solutions(tp(10)) == ["3+7", "5+5"]
    assert t.solutions(tp(40)) == ["3+37", "11+29", "17+23"]
    assert t.solutions(tp(100)) == ["3+97", "11+89", "17+83", "29+71", "41+59", "47+53"]
    assert t.solutions(tp(100), limit=2) == ["3+97", "11+89"]


def test_two_primes_difficulty_buckets_and_generate():
    t = TwoPrimes()
    assert [t.generate(1, 0, d)[0].difficulty for d in range(4)] == [0, 1, 2, 3]
    d0 = t.generate(45, seed=1, difficulty=0)
    assert sorted(p.data["n"] for p in d0) == list(range(10, 100, 2))  # all 45 N below 100
    assert t.generate(20, seed=7) == t.generate(20, seed=7)
    assert t.generate(20, seed=7) != t.generate(20, seed=8)
    assert len(t.generate(100, seed=0, difficulty=0)) == 100  # past the pool: repeats


def test_two_primes_splits(tmp_path):
    t = TwoPrimes()
    train, ev = t.load_split("train"), t.load_split("eval")
    assert (len(train), len(ev)) == (131, 64)
    ns = [p.data["n"] for p in train + ev]
    assert sorted(ns) == list(range(10, 399, 2))  # disjoint and complete
    # 45/50/50/50 N per bucket -> 64 * share = 14.8/16.4/16.4/16.4 -> 15/17/16/16
    assert Counter(p.difficulty for p in ev) == {0: 15, 1: 17, 2: 16, 3: 16}
    write_splits(t, tmp_path)  # regenerating reproduces the shipped files
    assert t.load_split("eval", tmp_path) == ev and t.load_split("train", tmp_path) == train


# ---------------------------------------------------------------- countdown


def test_countdown_prompt_and_verdicts():
    t = Countdown()
    p = cd([3, 5, 7], 22)
    assert t.prompt(p) == "3,5,7>22:"
    for good in ["3*5+7", "7+5*3", "(5*3)+7", " 7 + (3*5) "]:
        assert t.verify(p, good).correct, good
    wrong = t.verify(p, "3*7+5")  # 26
    assert wrong.parsed and not wrong.correct and wrong.mode_key is None and wrong.answer is not None
    assert not t.verify(cd([2, 5, 7], 14), "7+7").correct  # 7 used twice
    assert t.verify(cd([2, 5, 7], 14), "2*7").correct  # a sub-multiset is fine
    assert not t.verify(cd([2, 5, 7], 14), "14").correct  # 14 is not given
    assert not t.verify(cd([2, 5, 7], 14), "2*(5+2)").correct  # 2 used twice
    assert not t.verify(cd([3, 4, 8], 6), "3/4*8").correct  # 3/4 is not an integer
    assert t.verify(cd([3, 4, 8], 6), "3*8/4").correct
    assert not t.verify(cd([2, 3, 7], 9), "7/2*3").correct  # floor division would give 9
    deep = t.verify(p, "(" * 120 + "3" + ")" * 120)  # deep but legal nesting: parsed, wrong
    assert deep.parsed and not deep.correct
    assert not t.verify(cd([5, 5, 7], 7), "7/(5-5)").correct  # division by zero: wrong, no crash
    for garbage in ["", "abc", "3*5+", "2**3", "-3+25", "3//1", "3 5", "(" * 300 + "3" + ")" * 300,
                    "__import__('os')", "3*5+7 = 22", "1" * 400, "07+15"]:
        v = t.verify(p, garbage)
        assert not v.parsed and not v.correct and v.mode_key is None, garbage


def key(expr: str) -> str:
    parsed = parse(expr)
    assert parsed is not None, expr
    return parsed.key


@pytest.mark.parametrize("a,b", [
    ("3*5+7", "7+5*3"), ("3*5+7", "(5*3)+7"), ("7-(5-3)", "7-5+3"), ("7-5+3", "3+7-5"),
    ("8/(4/2)", "8*2/4"), ("(2+3)*4", "4*(3+2)"), ("2*3*4", "4*(2*3)"), ("12/3/2", "12/(3*2)"),
    ("(9-4)*(2+6)", "(6+2)*(9-4)"), ("20-(3+5)", "20-3-5"),
])
def test_countdown_equivalent_expressions_share_a_mode_key(a, b):
    assert key(a) == key(b)


@pytest.mark.parametrize("a,b", [
    ("3*5+7", "3*(5+7)"), ("(7-5)*3", "7-5*3"), ("8/4/2", "8/(4/2)"), ("2*3+4", "2*(3+4)"),
    ("7-5+3", "7-(5+3)"), ("10+4", "4*6-10"), ("12/3", "3*12"), ("9-4", "4-9"),
])
def test_countdown_different_expressions_have_different_mode_keys(a, b):
    assert key(a) != key(b)


def test_countdown_solutions_by_hand():
    t = Countdown()
    # 2,3,4 -> 10: only 2*3+4 and 3*4-2 (checked by hand over all trees)
    sols = t.solutions(cd([2, 3, 4], 10))
    assert sorted(sols) == sorted({key("2*3+4"), key("3*4-2")})
    assert len(t.solutions(cd([3, 5, 7], 22))) == 1  # only 3*5+7
    assert t.solutions(cd([2, 3, 4, 5], 10), limit=3) == t.solutions(cd([2, 3, 4, 5], 10))[:3]


def test_countdown_enumeration_matches_brute_force():
    """The memoised canonical enumeration equals a plain loop over all trees and orders."""
    numbers = (2, 3, 5, 6)

    def trees(nums):  # (text, value) for every tree with positive integer intermediates
        if len(nums) == 1:
            yield str(nums[0]), nums[0]
            return
        for i in range(1, len(nums)):
            for (a, u), (b, v) in itertools.product(trees(nums[:i]), trees(nums[i:])):
                yield f"({a}+{b})", u + v
                yield f"({a}*{b})", u * v
                if u > v:
                    yield f"({a}-{b})", u - v
                if u % v == 0:
                    yield f"({a}/{b})", u // v

    brute: dict[int, set[str]] = {}
    for r in range(1, len(numbers) + 1):
        for perm in itertools.permutations(numbers, r):
            for text, value in trees(perm):
                brute.setdefault(value, set()).add(key(text))
    fast = {v: set(ks) for v, ks in all_solutions(numbers).items()}
    assert fast == brute
    assert sum(len(ks) for ks in fast.values()) == sum(len(ks) for ks in all_solutions(numbers).values())


def test_countdown_split_solutions_verify_with_distinct_keys():
    t = Countdown()
    ev = t.load_split("eval")
    for d in (0, 1, 2):
        for p in [q for q in ev if q.difficulty == d][:4]:
            sols = t.solutions(p)
            verdicts = [t.verify(p, s) for s in sols]
            assert len(sols) >= 2 and all(v.correct for v in verdicts), p.id
            assert len({v.mode_key for v in verdicts}) == len(sols)


def test_countdown_generate_properties_and_determinism():
    t = Countdown()
    ps = t.generate(6, seed=3, difficulty=1)
    assert ps == t.generate(6, seed=3, difficulty=1) and ps != t.generate(6, seed=4, difficulty=1)
    for p in ps:
        nums, target = p.data["numbers"], p.data["target"]
        assert len(nums) == 4 and len(set(nums)) == 4 and all(2 <= x <= 20 for x in nums)
        assert 10 <= target <= 100 and target not in nums and len(t.solutions(p)) >= 2
    assert len({p.id for p in t.generate(30, seed=0)}) == 30
    assert {len(p.data["numbers"]) for p in t.generate(2, seed=0, difficulty=0)} == {3}


def test_countdown_splits(tmp_path):
    t = Countdown()
    train, ev = t.load_split("train"), t.load_split("eval")
    assert (len(train), len(ev)) == (512, 64)
    assert not {p.id for p in train} & {p.id for p in ev}
    assert len({p.id for p in train}) == 512
    # 40/40/20 %: 512 -> 204.8/204.8/102.4 -> 205/205/102; 64 -> 25.6/25.6/12.8 -> 26/25/13
    assert Counter(p.difficulty for p in train) == {0: 205, 1: 205, 2: 102}
    assert Counter(p.difficulty for p in ev) == {0: 26, 1: 25, 2: 13}
    write_splits(t, tmp_path)  # the shipped files are what the code regenerates
    assert t.load_split("eval", tmp_path) == ev and t.load_split("train", tmp_path) == train


def test_missing_split_file_says_how_to_regenerate(tmp_path):
    with pytest.raises(TaskDataError, match="write-splits"):
        TwoPrimes().load_split("train", tmp_path)
    with pytest.raises(UnknownNameError, match="eval"):
        TwoPrimes().load_split("test")


# ---------------------------------------------------------------- gsm8k


@pytest.fixture(scope="module")
def gsm() -> GSM8K:
    return GSM8K()


def test_gsm8k_sample_loads_and_splits(gsm):
    train, ev = gsm.load_split("train"), gsm.load_split("eval")
    assert (len(train), len(ev)) == (18, 6)  # 24 records, a quarter held out
    assert not {p.id for p in train} & {p.id for p in ev}
    assert gsm.generate(3, seed=0) == train[:3]
    baker = next(p for p in train + ev if p.data["question"].startswith("A baker"))
    assert baker.data["gold"] == "38"  # 14*12 - 130
    assert gsm.prompt(baker).startswith("Question: A baker") and gsm.prompt(baker).endswith("\nAnswer:")
    assert "####" in gsm.instruction(baker)
    assert gsm.verify(baker, gsm.solutions(baker)[0]).correct


def test_gsm8k_numeric_verification(gsm):
    big = Problem("g", {"question": "?", "answer": "#### 1234", "gold": "1234"})
    half = Problem("h", {"question": "?", "answer": "#### 4.5", "gold": "4.5"})
    neg = Problem("n", {"question": "?", "answer": "#### -10", "gold": "-10"})
    cases = [
        (big, "So the total is 1,234 apples.", True, True),
        (big, "#### $1,234.00", True, True),
        (big, "It costs $1234.", True, True),
        (big, "#### 1,234\n", True, True),
        (big, "first 1234, then 12", True, False),  # the last number counts
        (big, "#### 1234 not 12", True, True),  # the number after the last ####
        (big, "#### 12\nwait\n#### 1234", True, True),
        (big, "#### 1235", True, False),
        (big, "no idea", False, False),
        (big, "####", False, False),
        (half, "4.5000001", True, True),
        (half, "4.51", True, False),
        (neg, "It falls to -10 degrees.", True, True),
        (neg, "from 6 to 10", True, False),
    ]
    for problem, text, parsed, correct in cases:
        v = gsm.verify(problem, text)
        assert (v.parsed, v.correct) == (parsed, correct), text
        assert (v.mode_key is not None) == correct
    a = gsm.verify(big, "The answer\n is   #### 1234 ")
    b = gsm.verify(big, "the ANSWER is #### 1234")
    assert a.mode_key == b.mode_key and a.answer == "1234"
    assert a.mode_key != gsm.verify(big, "so #### 1234").mode_key


def write_lines(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_gsm8k_custom_columns_and_errors(tmp_path):
    recs = [{"problem": f"What is {i} plus {i}?", "solution": f"{i} + {i} = {2 * i}\n#### {2 * i}"} for i in range(5)]
    path = write_lines(tmp_path / "mine.jsonl", recs)
    t = GSM8K(path=str(path), question_field="problem", answer_field="solution", eval_size=2, seed=1)
    train, ev = t.load_split("train"), t.load_split("eval")
    assert (len(train), len(ev)) == (3, 2)
    p = next(q for q in train + ev if q.data["question"] == "What is 3 plus 3?")
    assert p.data["gold"] == "6" and t.verify(p, "#### 6").correct and not t.verify(p, "#### 7").correct
    with pytest.raises(TaskDataError) as err:
        GSM8K(path=str(path))
    msg = str(err.value)
    assert "'question'" in msg and "problem" in msg and "solution" in msg and "question_field" in msg
    with pytest.raises(TaskDataError, match="does not exist"):
        GSM8K(path=str(tmp_path / "absent.jsonl"))
    csv = tmp_path / "mine.csv"
    csv.write_text('question,answer\n"What is 2 times 3?","2*3=6\n#### 6"\n"Half of 9?","#### 4.5"\n')
    rows = GSM8K(path=str(csv), eval_size=0).load_split("train")
    assert [r.data["gold"] for r in rows] == ["6", "4.5"]


# ---------------------------------------------------------------- custom

VERIFIER = '''
def exact(record, completion):
    return completion.strip() == record["answer"]

def score(record, completion):
    return 0.5 if record["answer"] in completion else 0.0

def as_dict(record, completion):
    ok = completion.strip() == record["answer"]
    return {"correct": ok, "answer": completion.strip(), "mode_key": "K:" + completion.strip()}

def boom(record, completion):
    raise ValueError("kaput")

def bad_return(record, completion):
    return "yes"

not_callable = 3
'''


@pytest.fixture()
def custom_files(tmp_path, monkeypatch):
    (tmp_path / "myverif.py").write_text(VERIFIER)
    monkeypatch.syspath_prepend(str(tmp_path))
    data = write_lines(tmp_path / "data.jsonl", [
        {"id": "q1", "prompt": "2+2=", "answer": "4"},
        {"id": "q2", "prompt": "3+3=", "answer": "6"},
        {"prompt": "5+5=", "answer": "10"},
        {"id": "q4", "prompt": "1+1=", "answer": "2"},
    ])
    return tmp_path, data


def test_custom_bool_float_dict_forms(custom_files):
    tmp, data = custom_files
    t = get_task("custom", path=str(data), verifier="myverif:exact", eval_size=1)
    probs = {p.id: p for s in t.split_names() for p in t.load_split(s)}
    assert set(probs) == {"q1", "q2", "line-3", "q4"}
    assert len(t.load_split("eval")) == 1 and len(t.load_split("train")) == 3
    q1 = probs["q1"]
    assert t.prompt(q1) == "2+2="
    v = t.verify(q1, " 4 ")
    assert (v.correct, v.reward, v.parsed, v.mode_key) == (True, 1.0, True, "4")
    assert t.verify(q1, "5") == Verdict(0.0, False, True, "5", None)

    f = get_task("custom", path=str(data), verifier="myverif:score")
    assert (f.verify(q1, "it is 4").reward, f.verify(q1, "it is 4").correct) == (0.5, True)
    assert (f.verify(q1, "it is 5").reward, f.verify(q1, "it is 5").correct) == (0.0, False)

    d = get_task("custom", path=str(data), verifier=f"{tmp}/myverif.py:as_dict")  # file-path form
    dv = d.verify(q1, "4")
    assert (dv.correct, dv.reward, dv.answer, dv.mode_key) == (True, 1.0, "4", "K:4")
    assert d.verify(q1, "3").mode_key is None


def test_custom_raising_verifier_names_the_problem(custom_files):
    _, data = custom_files
    t = get_task("custom", path=str(data), verifier="myverif:boom")
    with pytest.raises(VerifierError) as err:
        t.verify(Problem("q2", {"prompt": "3+3=", "answer": "6"}), "six, I think")
    msg = str(err.value)
    assert "q2" in msg and "kaput" in msg and "myverif:boom" in msg and "six, I think" in msg
    assert isinstance(err.value.__cause__, ValueError)
    bad = get_task("custom", path=str(data), verifier="myverif:bad_return")
    with pytest.raises(VerifierError, match="str"):
        bad.verify(Problem("q1", {"prompt": "2+2=", "answer": "4"}), "4")


def test_custom_bad_inputs(custom_files):
    tmp, data = custom_files
    with pytest.raises(ConfigError, match="nosuchmodule"):
        get_task("custom", path=str(data), verifier="nosuchmodule:f")
    with pytest.raises(ConfigError, match="not callable"):
        get_task("custom", path=str(data), verifier="myverif:not_callable")
    with pytest.raises(ConfigError, match="no attribute"):
        get_task("custom", path=str(data), verifier="myverif:missing")
    with pytest.raises(TaskDataError, match="does not exist"):
        get_task("custom", path=str(tmp / "nope.jsonl"), verifier="myverif:exact")
    broken = tmp / "broken.jsonl"
    broken.write_text('{"prompt": "a"}\n{"prompt": oops}\n')
    with pytest.raises(TaskDataError, match="line 2"):
        get_task("custom", path=str(broken), verifier="myverif:exact")
    with pytest.raises(TaskDataError, match="prompt_field"):
        get_task("custom", path=str(data), verifier="myverif:exact", prompt_field="question")


def test_custom_split_field(custom_files):
    tmp, _ = custom_files
    data = write_lines(tmp / "split.jsonl", [
        {"id": "a", "prompt": "x", "answer": "1", "split": "train"},
        {"id": "b", "prompt": "y", "answer": "2", "split": "eval"},
        {"id": "c", "prompt": "z", "answer": "3"},
    ])
    t = get_task("custom", path=str(data), verifier="myverif:exact")
    assert [p.id for p in t.load_split("train")] == ["a", "c"]
    assert [p.id for p in t.load_split("eval")] == ["b"]


# ---------------------------------------------------------------- registry and base


def test_registry():
    assert set(list_tasks()) == {"two_primes", "countdown", "gsm8k", "math", "custom"} == set(TASKS)
    with pytest.raises(UnknownNameError) as err:
        get_task("three_primes")
    assert all(name in str(err.value) for name in ["two_primes", "countdown", "gsm8k", "custom"])
    with pytest.raises(ConfigError, match="question_field"):
        get_task("gsm8k", question_column="q")  # the message lists the valid parameters
    with pytest.raises(ConfigError, match="verifier"):
        get_task("custom", path="x.jsonl")
    assert isinstance(get_task("two_primes"), TwoPrimes)


def test_problem_roundtrip_and_verify_batch():
    p = Problem("cd-x", {"numbers": [1, 2], "target": 3}, difficulty=2)
    assert Problem.from_json(json.loads(json.dumps(p.to_json()))) == p
    with pytest.raises(TaskDataError):
        Problem.from_json({"data": {}})
    t = TwoPrimes()
    got = t.verify_batch([tp(10), tp(10), tp(12)], ["3+7", "4+6", "5+7"])
    assert [v.correct for v in got] == [True, False, True]
    with pytest.raises(ConfigError):
        t.verify_batch([tp(10)], ["3+7", "5+5"])
