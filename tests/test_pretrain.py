"""``workbench pretrain`` builds a model and tokenizer that load like any Hub model."""

from __future__ import annotations

import json

import pytest
import torch

from workbench.pretrain import PretrainConfig, pretrain


def test_small_pretrain_saves_a_loadable_model(tmp_path):
    cfg = PretrainConfig(steps=30, batch_size=64, hidden=32, layers=1, heads=2, mlp=64, eval_n=2, lr=1e-2)
    report = pretrain(cfg, out_dir=tmp_path, progress=False)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = tok("N=040:3+37", add_special_tokens=False)["input_ids"]
    assert len(ids) == len("N=040:3+37")                               # one token per character
    assert tok.decode(ids) == "N=040:3+37"
    assert model.config.model_type == "llama"
    assert (tmp_path / "model.safetensors").is_file()
    saved = json.loads((tmp_path / "pretrain.json").read_text())
    assert saved["eval"]["n"] == 2 and 0.0 <= saved["eval"]["pass@1"] <= 1.0
    # it learned something: the completion loss on the corpus is below the uniform baseline
    with torch.no_grad():
        full = tok("N=040:3+37", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        x = torch.tensor([full])
        labels = x.clone()
        labels[0, :6] = -100
        loss = model(input_ids=x, labels=labels).loss.item()
    assert loss < torch.log(torch.tensor(float(len(tok)))).item()
    assert report["params"] == sum(p.numel() for p in model.parameters())


def test_embedded_model_is_a_good_collapse_subject():
    """Measure the shipped model on the eval split, 64 samples per problem at temperature 1,
    against the targets it was built for (and compare with what pretrain.json recorded)."""
    from workbench.config import ModelConfig
    from workbench.evaluation import evaluate_model
    from workbench.models import load_model_and_tokenizer
    from workbench.paths import MODELS_DIR
    from workbench.tasks import get_task

    model, tok, _ = load_model_and_tokenizer(ModelConfig(name_or_path="tiny-primes"))
    task = get_task("two_primes")
    res = evaluate_model(model, tok, task, task.load_split("eval"), n=64, seed=1234, max_new_tokens=task.max_new_tokens)
    s = res.summary
    assert 0.15 <= s["eval/pass@1"] <= 0.5
    assert s["eval/pass@64"] >= s["eval/pass@1"] + 0.3
    assert 0.10 <= s["eval/frac_unsolved"] <= 0.40
    assert s["eval/mean_distinct_correct_modes"] >= 2.5
    recorded = json.loads((MODELS_DIR / "tiny-primes" / "pretrain.json").read_text())["eval"]
    assert recorded["pass@1"] == pytest.approx(s["eval/pass@1"], abs=0.02)
    assert (MODELS_DIR / "tiny-primes" / "model.safetensors").stat().st_size < 30e6


@pytest.mark.parametrize("argv, fragment", [
    (["--steps", "-1"], "steps = -1"), (["--steps", "0"], "steps = 0"), (["--lr", "0"], "lr = 0.0"),
    (["--hidden", "30", "--heads", "4"], "multiple of heads"), (["--name", "../escape"], "name = '../escape'"),
    (["--eval-n", "0"], "eval_n = 0"),
])
def test_bad_pretrain_settings_are_refused_before_anything_is_written(argv, fragment, capsys):
    """`workbench pretrain --steps -1` used to train nothing and save the untrained model over
    the embedded one."""
    import hashlib

    from workbench.cli import main
    from workbench.paths import MODELS_DIR

    def digest():
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (MODELS_DIR / "tiny-primes").iterdir()}

    before = digest()
    assert main(["pretrain", *argv]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
    assert digest() == before
