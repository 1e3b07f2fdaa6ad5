"""Checkpoints with random weights at the paper models' real layer shapes.

They stand in for the Hub models wherever the Hub cannot be reached (tests, this machine): each
is a standard Hugging Face folder (config.json, model.safetensors, tokenizer files) that
``load_encoder`` reads exactly as it reads a downloaded model. Only the vocabulary is small: a
character-level tokenizer (Latin and Cyrillic letters, digits, punctuation) built without
training, WordPiece for BERT and unigram pieces for the others.

| family      | paper model        | layers | hidden | heads | feed-forward |
|-------------|--------------------|--------|--------|-------|--------------|
| bert        | mBERT              | 12     | 768    | 12    | 3072         |
| xlm-roberta | XLM-R base         | 12     | 768    | 12    | 3072         |
| mbart       | mBART-50 (large)   | 12+12  | 1024   | 16    | 4096         |
| m2m100      | NLLB-200 600M      | 12+12  | 1024   | 16    | 4096         |
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import (BertConfig, BertForMaskedLM, M2M100Config, M2M100ForConditionalGeneration, MBartConfig,
                          MBartForConditionalGeneration, PreTrainedTokenizerFast, XLMRobertaConfig,
                          XLMRobertaForMaskedLM)

from mtnb.core.errors import MtnbError

def family_shape(family: str, width: int, layers: int, heads: int, ffn: int) -> dict:
    """The config arguments that give ``family`` a ``layers``-deep, ``width``-wide Transformer
    with ``heads`` attention heads and ``ffn`` feed-forward units (the seq2seq families get a
    decoder of the same shape)."""
    if family in ("bert", "xlm-roberta"):
        return dict(hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=ffn)
    return dict(d_model=width, encoder_layers=layers, decoder_layers=layers, encoder_attention_heads=heads,
                decoder_attention_heads=heads, encoder_ffn_dim=ffn, decoder_ffn_dim=ffn)


# the paper models' shapes: mBERT and XLM-R base (768 wide), mBART-50 and NLLB-600M (1024 wide), 12 layers
PAPER_SHAPES = {"bert": family_shape("bert", 768, 12, 12, 3072),
                "xlm-roberta": family_shape("xlm-roberta", 768, 12, 12, 3072),
                "mbart": family_shape("mbart", 1024, 12, 16, 4096),
                "m2m100": family_shape("m2m100", 1024, 12, 16, 4096)}
LANGUAGE_TOKENS = {"mbart": ["de_DE", "en_XX", "es_XX", "fr_XX", "ru_RU"],
                   "m2m100": ["deu_Latn", "eng_Latn", "spa_Latn", "fra_Latn", "rus_Cyrl"]}
CHARACTERS = (string.ascii_letters + string.digits + string.punctuation
              + "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ"
              + "äöüßéèêàâçñíóúÄÖÜÉÈÀÇÑ")


def character_tokenizer(family: str):
    """A small untrained tokenizer for ``family``, as a transformers fast tokenizer.

    BERT: WordPiece over single characters (``a``, ``##a``), with [PAD] [UNK] [CLS] [SEP] [MASK].
    Others: unigram over characters with and without the word-start mark ``▁``, with
    <s> <pad> </s> <unk> <mask>, plus the language tokens of mbart/m2m100. Sequences are wrapped
    as the family wraps them (``[CLS] x [SEP]`` or ``<s> x </s>``).
    """
    if family == "bert":
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        vocab = specials + list(CHARACTERS) + ["##" + c for c in CHARACTERS]
        tok = Tokenizer(models.WordPiece({p: i for i, p in enumerate(vocab)}, unk_token="[UNK]"))
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        cls, sep = "[CLS]", "[SEP]"
        names = dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                     mask_token="[MASK]")
    else:
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] + LANGUAGE_TOKENS.get(family, [])
        pieces = [(p, 0.0) for p in specials] + [("▁", -2.0)]
        pieces += [("▁" + c, -3.0) for c in CHARACTERS] + [(c, -4.0) for c in CHARACTERS]
        tok = Tokenizer(models.Unigram(pieces, unk_id=3))
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        cls, sep = "<s>", "</s>"
        names = dict(bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                     cls_token="<s>", sep_token="</s>", mask_token="<mask>")
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=512, **names)


def random_config(family: str, vocab_size: int, shape: dict | None = None):
    """The transformers config of ``family`` at the paper model's shape (see the table above),
    or at ``shape`` (the same keys, other sizes)."""
    shape = PAPER_SHAPES[family] if shape is None else shape
    if family == "bert":
        return BertConfig(vocab_size=vocab_size, max_position_embeddings=512, **shape)
    if family == "xlm-roberta":
        return XLMRobertaConfig(vocab_size=vocab_size, max_position_embeddings=514, pad_token_id=1,
                                bos_token_id=0, eos_token_id=2, **shape)
    cls = MBartConfig if family == "mbart" else M2M100Config
    return cls(vocab_size=vocab_size, max_position_embeddings=1024, pad_token_id=1, bos_token_id=0,
               eos_token_id=2, decoder_start_token_id=2, scale_embedding=True, **shape)


def build_random_checkpoint(family: str, folder: str | Path, seed: int = 0) -> Path:
    """Save a randomly initialised ``family`` model at the paper's shape into ``folder``.

    The full model is saved (for mbart and m2m100: encoder and decoder, as the Hub checkpoints
    are) in safetensors, with its tokenizer. Same seed, same weights. Returns the folder.
    """
    if family not in PAPER_SHAPES:
        raise MtnbError(f"unknown family {family!r}: use one of {', '.join(PAPER_SHAPES)}")
    folder = Path(folder)
    tokenizer = character_tokenizer(family)
    config = random_config(family, vocab_size=len(tokenizer))
    model_cls = {"bert": BertForMaskedLM, "xlm-roberta": XLMRobertaForMaskedLM,
                 "mbart": MBartForConditionalGeneration, "m2m100": M2M100ForConditionalGeneration}[family]
    torch.manual_seed(seed)
    model = model_cls(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder
