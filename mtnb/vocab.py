"""Vocabularies trained on the mini corpus, wrapped as each family's Hugging Face tokenizer.

| family      | model                      | tokenizer class      | special tokens                        |
|-------------|----------------------------|----------------------|---------------------------------------|
| bert        | WordPiece, cased           | BertTokenizer        | [PAD] [UNK] [CLS] [SEP] [MASK]        |
| xlm-roberta | unigram (SentencePiece-like)| XLMRobertaTokenizer | <s> <pad> </s> <unk> ... <mask>       |
| mbart       | unigram                    | MBart50Tokenizer     | + mBART-50 language codes (de_DE ...) |
| m2m100      | BPE (as NLLB's SentencePiece BPE) | NllbTokenizer | + NLLB language codes (deu_Latn ...)  |

Each is trained with the ``tokenizers`` library on the given texts (all languages mixed), then
handed to the transformers class that the real model of the family uses, so a mini checkpoint
folder is read exactly as a Hub checkpoint is (``AutoTokenizer.from_pretrained``), language
codes included.
"""

from __future__ import annotations

import json

from .errors import MtnbError

KINDS = ("bert", "xlm-roberta", "mbart", "m2m100")


def _unigram_pieces(texts, vocab_size: int, specials: list[str]) -> list[tuple[str, float]]:
    """Train a unigram model; returns its (piece, log-probability) list, ``specials`` first."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>",
                                      show_progress=False, max_piece_length=16)
    tok.train_from_iterator(texts, trainer=trainer)
    return [(piece, float(score)) for piece, score in json.loads(tok.to_str())["model"]["vocab"]]


def train_tokenizer(kind: str, texts: list[str], vocab_size: int = 8000):
    """A tokenizer of family ``kind`` trained on ``texts`` (see the module table)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    if kind not in KINDS:
        raise MtnbError(f"unknown tokenizer kind {kind!r}: use one of {', '.join(KINDS)}")
    if kind == "bert":
        from transformers import BertTokenizer

        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, show_progress=False,
                                            special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
        tok.train_from_iterator(texts, trainer=trainer)
        vocab = dict(sorted(tok.get_vocab().items(), key=lambda kv: kv[1]))
        return BertTokenizer(vocab=vocab, do_lower_case=False, strip_accents=False, tokenize_chinese_chars=True)
    if kind == "xlm-roberta":
        from transformers import XLMRobertaTokenizer

        pieces = _unigram_pieces(texts, vocab_size - 1, ["<s>", "<pad>", "</s>", "<unk>"])
        return XLMRobertaTokenizer(vocab=pieces + [("<mask>", 0.0)])
    if kind == "mbart":
        from transformers import MBart50Tokenizer

        # MBart50Tokenizer expects SentencePiece order (<unk> <s> </s> first) and appends its
        # language codes and <mask> itself
        pieces = _unigram_pieces(texts, vocab_size, ["<unk>", "<s>", "</s>"])
        return MBart50Tokenizer(vocab=pieces, src_lang="en_XX")
    from transformers import NllbTokenizer

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return NllbTokenizer(vocab=model["vocab"], merges=merges, src_lang="eng_Latn")
