"""Bad input on the command line, table-driven: each case exits with code 2, prints a message
naming the field at fault, shows no traceback, and leaves the run store exactly as it was
(no new run, the existing run's rows and files untouched).

The cases run in-process through ``workbench.cli.main``; most fail at validation before a
model loads. A workspace with one finished run (1 step, a checkpoint) is shared by all.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from workbench.cli import main

#: (id, argv template, fragment expected in stderr). Templates: {ws} the shared workspace,
#: {run} its run id, {d} a folder of data files (see the fixture), {model} a random model.
CASES = [
    # ---- train: evaluation settings
    ("eval-temperature-0", "train --eval.temperature 0", "eval.temperature"),
    ("eval-temperature-neg", "train --eval.temperature -1", "eval.temperature"),
    ("eval-temperature-nan", "train --eval.temperature nan", "eval.temperature"),
    ("eval-max-problems-neg", "train --eval.max_problems -1", "eval.max_problems"),
    ("eval-bank-cap-neg", "train --eval.bank_cap -2", "eval.bank_cap"),
    ("eval-samples-kept-neg", "train --eval.samples_kept -1", "eval.samples_kept"),
    ("eval-seen-problems-neg", "train --eval.seen_problems -5", "eval.seen_problems"),
    ("eval-n-0", "train --eval.n 0", "eval.n"),
    ("eval-every-neg", "train --eval-every -1", "eval.every"),
    ("eval-ks-zero", "train --eval.ks [0]", "eval.ks"),
    ("eval-ks-over-n", "train --eval.ks [128] --eval-n 4", "eval.n"),
    ("eval-ks-string", 'train --eval.ks "x"', "eval.ks"),
    # ---- train: model
    ("device-unknown", "train --model.device tpu", "model.device"),
    ("device-malformed", "train --model.device cuda:x", "model.device"),
    ("device-missing-gpu", "train --model.device cuda:99", "model.device"),
    ("dtype-unknown", "train --model.dtype float64", "model.dtype"),
    ("chat-template", "train --model.chat_template maybe", "model.chat_template"),
    ("model-missing-folder", "train --model ./no/such/model", "./no/such/model"),
    ("lora-targets", "train --lora.targets no_such_module", "lora.targets"),
    ("lora-rank-0", "train --lora.rank 0", "lora.rank"),
    ("lora-rank-huge", "train --lora.rank 100000000", "lora.rank"),
    ("lora-alpha-nan", "train --lora.alpha nan", "lora.alpha"),
    ("lora-dropout-1", "train --lora.dropout 1", "lora.dropout"),
    # ---- train: rollout, optimiser, loss
    ("group-size-1", "train -G 1", "rollout.group_size"),
    ("group-size-text", "train -G abc", "rollout.group_size"),
    ("group-size-fraction", "train -G 2.5", "rollout.group_size"),
    ("prompts-0", "train -B 0", "rollout.prompts_per_step"),
    ("max-new-tokens-neg", "train --rollout.max_new_tokens -1", "rollout.max_new_tokens"),
    ("rollout-temperature-0", "train --rollout.temperature 0", "rollout.temperature"),
    ("rollout-temperature-inf", "train --rollout.temperature inf", "rollout.temperature"),
    ("chunk-size-0", "train --rollout.chunk_size 0", "rollout.chunk_size"),
    ("lr-0", "train --lr 0", "optim.lr"),
    ("lr-nan", "train --lr nan", "optim.lr"),
    ("beta1-1", "train --optim.beta1 1", "optim.beta1"),
    ("weight-decay-inf", "train --optim.weight_decay inf", "optim.weight_decay"),
    ("updates-0", "train --optim.updates_per_batch 0", "optim.updates_per_batch"),
    ("kl-coef-neg", "train --loss.kl_coef -0.1", "loss.kl_coef"),
    ("kl-coef-inf", "train --loss.kl_coef inf", "loss.kl_coef"),
    ("entropy-coef-nan", "train --loss.entropy_coef nan", "loss.entropy_coef"),
    ("eps-low-neg", "train --loss.eps_low -1", "loss.eps_low"),
    ("aggregation", "train --loss.aggregation mean", "loss.aggregation"),
    ("steps-neg", "train --steps -1", "steps"),
    ("steps-text", "train --steps many", "steps"),
    ("checkpoint-every-neg", "train --checkpoint-every -1", "checkpoint_every"),
    ("seed-neg", "train --seed -1", "seed"),
    ("seed-huge", "train --seed 99999999999999999999", "seed"),
    # ---- train: names, --set, --config
    ("task-unknown", "train --task nope", "unknown task 'nope'"),
    ("strategy-unknown", "train --strategy nope", "unknown strategy"),
    ("set-no-equals", "train --set foo", "--set 'foo'"),
    ("set-unknown-field", "train --set rollout.nope=3", "rollout.nope"),
    ("config-missing", "train --config {d}/missing.json", "--config"),
    ("config-bad-json", "train --config {d}/bad.json", "--config"),
    ("config-not-object", "train --config {d}/list.json", "mapping"),
    ("config-unknown-field", "train --config {d}/unknown_field.json", "rollout.nope"),
    ("config-not-utf8", "train --config {d}/latin1.json", "UTF-8"),
    ("run-id-taken", "train --run-id {run}", "already exists"),
    ("resume-unknown", "train --resume no-such-run", "no-such-run"),
    # ---- train: task parameters and data
    ("task-params-bad-json", "train --task.params {{bad", "task.params"),
    ("task-params-list", "train --task.params [1]", "task.params"),
    ("task-param-unknown", 'train --task.params {{"bogus":1}}', "bogus"),
    ("train-split-unknown", "train --task.train_split nope", "split"),
    ("custom-not-utf8", 'train --task custom --task.params {{"path":"{d}/latin1.jsonl","verifier":"{d}/verif.py:check"}}',
     "UTF-8"),
    ("custom-verifier-missing", 'train --task custom --task.params {{"path":"{d}/data.jsonl","verifier":"nosuchmod:f"}}',
     "nosuchmod"),
    ("custom-timeout-neg",
     'train --task custom --task.params {{"path":"{d}/data.jsonl","verifier":"{d}/verif.py:check","timeout":-1}}',
     "timeout"),
    ("custom-eval-size-neg",
     'train --task custom --task.params {{"path":"{d}/data.jsonl","verifier":"{d}/verif.py:check","eval_size":-1}}',
     "eval_size"),
    ("gsm8k-empty", 'train --task gsm8k --task.params {{"path":"{d}/empty.jsonl"}}', "is empty"),
    ("gsm8k-not-utf8", 'train --task gsm8k --task.params {{"path":"{d}/gsm8k_latin1.jsonl"}}', "UTF-8"),
    ("gsm8k-path-number", 'train --task gsm8k --task.params {{"path":5}}', "path=5"),
    ("gsm8k-eval-size-neg", 'train --task gsm8k --task.params {{"eval_size":-2}}', "eval_size"),
    ("custom-path-list", 'train --task custom --task.params {{"path":["a"],"verifier":"{d}/verif.py:check"}}', "path=['a']"),
    # ---- train: sizes that cannot fit in memory (refused before allocating)
    ("memory-train", "train -B 100000 -G 1000 --rollout.max_new_tokens 1000", "rollout.prompts_per_step"),
    ("memory-eval", "train --eval-n 100000000", "eval.n"),
    # ---- eval
    ("eval-cli-temperature-0", "eval --temperature 0", "--temperature"),
    ("eval-cli-temperature-neg", "eval --temperature -0.5", "--temperature"),
    ("eval-cli-n-0", "eval --n 0", "--n"),
    ("eval-cli-n-text", "eval --n many", "--n"),
    ("eval-cli-ks-text", "eval --ks a,b", "--ks"),
    ("eval-cli-ks-0", "eval --ks 0", "--ks"),
    ("eval-cli-ks-over-n", "eval --ks 128 --n 4", "--n"),
    ("eval-cli-max-problems-neg", "eval --max-problems -3", "--max-problems"),
    ("eval-cli-max-new-tokens-neg", "eval --max-new-tokens -1", "--max-new-tokens"),
    ("eval-cli-task-params-bad-json", "eval --task-params {{bad", "--task-params"),
    ("eval-cli-task-params-list", "eval --task-params [1,2]", "--task-params"),
    ("eval-cli-task-unknown", "eval --task nope", "unknown task 'nope'"),
    ("eval-cli-split-unknown", "eval --split nope", "split"),
    ("eval-cli-custom-not-utf8", 'eval --task custom --task-params {{"path":"{d}/latin1.jsonl","verifier":"{d}/verif.py:check"}}',
     "UTF-8"),
    ("eval-cli-gsm8k-empty", 'eval --task gsm8k --task-params {{"path":"{d}/empty.jsonl"}}', "is empty"),
    ("eval-cli-device", "eval --device tpu", "model.device"),
    ("eval-cli-dtype", "eval --dtype float64", "--dtype"),
    ("eval-cli-run-unknown", "eval --run no-such-run --workspace {ws}", "no-such-run"),
    ("eval-cli-run-step-missing", "eval --run {run} --workspace {ws} --step 99", "step 99"),
    ("eval-cli-step-without-run", "eval --step 3", "--step"),
    ("eval-cli-model-missing", "eval --model ./no/such/model", "./no/such/model"),
    ("eval-cli-memory", "eval --n 100000000", "--n"),
    # ---- runs, the command itself
    ("runs-export-unknown", "runs --workspace {ws} --export no-such-run", "no-such-run"),
    ("command-unknown", "frobnicate", "invalid choice"),
]

DATA = {
    "bad.json": '{"rollout": ',
    "list.json": "[1, 2]",
    "unknown_field.json": '{"rollout": {"nope": 3}}',
    "empty.jsonl": "",
    "data.jsonl": "".join(json.dumps({"id": f"q{i}", "prompt": f"{i}+1=", "answer": str(i + 1)}) + "\n"
                          for i in range(8)),
    "verif.py": "def check(record, completion):\n    return completion.strip() == record['answer']\n",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory, random_model_dir):
    """A workspace holding one finished run (1 step, checkpointed), and the data files."""
    from workbench.session import Session

    root = tmp_path_factory.mktemp("bad-input")
    d = root / "data"
    d.mkdir()
    for name, text in DATA.items():
        (d / name).write_text(text, encoding="utf-8")
    (d / "latin1.jsonl").write_bytes('{"prompt": "café"}\n'.encode("latin-1"))
    (d / "latin1.json").write_bytes('{"name": "café"}'.encode("latin-1"))
    (d / "gsm8k_latin1.jsonl").write_bytes('{"question": "café?", "answer": "#### 4"}\n'.encode("latin-1"))
    ws = root / "runs"
    sess = Session(workspace=str(ws), steps=1, checkpoint_every=1, **{
        "model.name_or_path": str(random_model_dir), "rollout.prompts_per_step": 2, "rollout.group_size": 2,
        "rollout.max_new_tokens": 4, "eval.n": 2, "eval.max_problems": 2, "eval.seen_problems": 0})
    list(sess.run())
    run_id = sess.run_id
    del sess
    return {"ws": str(ws), "run": run_id, "d": str(d), "model": str(random_model_dir)}


def snapshot(ws: str) -> tuple:
    """Every row of every table of the store, and every file under the workspace but the
    database's own (its journal files come and go with readers)."""
    root = Path(ws)
    con = sqlite3.connect(root / "store.sqlite")
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        rows = {t: con.execute(f'SELECT * FROM "{t}"').fetchall() for t in tables}
    finally:
        con.close()
    files = sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*")
                   if p.is_file() and not p.name.startswith("store.sqlite"))
    return rows, files


@pytest.mark.parametrize("argv, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_error_and_changes_nothing(world, argv, fragment, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)                 # relative paths (e.g. the default workspace) land here
    args = [a.format(**world) for a in argv.split(" ")]
    if args[0] == "train":
        args += ["--workspace", world["ws"], "--quiet", "--steps", "1"] if "--steps" not in args else \
                ["--workspace", world["ws"], "--quiet"]
    before = snapshot(world["ws"])
    try:
        rc = main(args)
    except SystemExit as exc:                   # argparse's own usage errors
        rc = exc.code
    out = capsys.readouterr()
    assert rc == 2, (rc, out.err[-2000:])
    assert fragment in out.err, out.err
    assert "Traceback" not in out.err + out.out
    assert snapshot(world["ws"]) == before


def test_the_table_is_large_and_its_ids_unique():
    assert len(CASES) >= 50
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("config, fragment", [
    (123, "got 123 of type int"),
    ("rollout.group_size=8", "of type str"),
    ([("steps", 1)], "of type list"),
], ids=["int", "str", "list"])
def test_session_with_a_config_of_the_wrong_type(world, config, fragment):
    from workbench.errors import ConfigError
    from workbench.session import Session

    before = snapshot(world["ws"])
    with pytest.raises(ConfigError, match=fragment):
        Session(config, workspace=world["ws"])
    assert snapshot(world["ws"]) == before


def test_a_config_built_in_python_is_type_checked():
    from workbench.config import RolloutConfig, RunConfig
    from workbench.errors import ConfigError

    with pytest.raises(ConfigError, match="config section 'rollout' is of type int"):
        RunConfig(rollout=5).validate()
    with pytest.raises(ConfigError, match="rollout.group_size = '8'.*a whole number"):
        RunConfig(rollout=RolloutConfig(group_size="8")).validate()
    with pytest.raises(ConfigError, match="rollout.temperature = True.*a number"):
        RunConfig(rollout=RolloutConfig(temperature=True)).validate()
    RunConfig(rollout=RolloutConfig(temperature=1)).validate()       # an int where a float is expected is fine


def test_memory_estimate_refuses_only_what_cannot_fit(monkeypatch):
    from workbench.errors import ConfigError
    from workbench.models import memory

    shape = {"vocab": 1000, "layers": 2, "kv_width": 64, "elem": 4}
    parts = memory.training_bytes(shape, rows=8, prompt_len=10, max_new_tokens=20)
    # the completion logits alone: 8 rows x 20 positions x 1000 values x (4 + 4) bytes
    assert parts["completion logits"] == 8 * 20 * 1000 * 8
    assert parts["KV cache"] == 2 * 2 * 8 * 30 * 64 * 4
    need = sum(parts.values())
    monkeypatch.setattr(memory, "available_bytes", lambda device: need)
    memory.ensure_fits(parts, "cpu", "a step", "Lower B.")                  # exactly fits
    monkeypatch.setattr(memory, "available_bytes", lambda device: need - 1)
    with pytest.raises(ConfigError, match=r"a step needs at least .* GiB on cpu .*completion logits.*Lower B\."):
        memory.ensure_fits(parts, "cpu", "a step", "Lower B.")
    monkeypatch.setenv("WORKBENCH_NO_MEMORY_CHECK", "1")
    memory.ensure_fits(parts, "cpu", "a step", "Lower B.")                  # the user's override
    monkeypatch.setattr(memory, "available_bytes", lambda device: None)
    monkeypatch.delenv("WORKBENCH_NO_MEMORY_CHECK")
    memory.ensure_fits(parts, "cpu", "a step", "Lower B.")                  # unknown free memory: no refusal


def test_free_memory_is_read_on_this_machine():
    from workbench.models.memory import available_bytes

    free = available_bytes("cpu")
    assert free is None or free > 0
