"""A character-level tokenizer for the embedded tiny models, in the Hugging Face format.

Built with ``tokenizers`` (a BPE model with no merges is exactly a character tokenizer)
and wrapped as ``PreTrainedTokenizerFast``, so it saves and loads with
``AutoTokenizer.from_pretrained`` like any Hub tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"


def build_char_tokenizer(texts: Iterable[str]):
    """A tokenizer whose vocabulary is the special tokens plus every character in ``texts``."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    chars = sorted({ch for text in texts for ch in text})
    vocab = {PAD: 0, EOS: 1, UNK: 2}
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    backend.decoder = decoders.Fuse()  # join characters back without spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=PAD, eos_token=EOS, unk_token=UNK, padding_side="left"
    )
