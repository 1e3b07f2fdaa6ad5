"""Vocabularies trained on the mini corpus, wrapped as each family's Hugging Face tokenizer.

| family      | model                      | tokenizer class      | special tokens                        |
|-------------|----------------------------|----------------------|---------------------------------------|
| bert        | WordPiece, cased (pieces from BPE) | BertTokenizer | [PAD] [UNK] [CLS] [SEP] [MASK]        |
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

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import BertTokenizer, MBart50Tokenizer, NllbTokenizer, XLMRobertaTokenizer

from mtnb.core.errors import MtnbError

KINDS = ("bert", "xlm-roberta", "mbart", "m2m100")


COVERAGE_WINDOW = 0.01   # log-probability: wider than a run of made-up scores (1e-4 per character)


def _unigram_pieces(texts, vocab_size: int, specials: list[str]) -> list[tuple[str, float]]:
    """Train a unigram model; returns its (piece, log-probability) list, ``specials`` first.

    The trainer's scores differ between runs in their last digits (its sums run in parallel),
    and the single characters it adds for coverage get made-up scores in hash order (just below
    or, on the corpus split into pretraining and task pages, just above the lowest learnt
    piece); rounding the scores to 8 decimals, giving those characters one common score and
    sorting by (-score, piece) makes the vocabulary, ids included, the same on every run.
    """
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>",
                                      show_progress=False, max_piece_length=16)
    tok.train_from_iterator(texts, trainer=trainer)
    pieces = [(piece, round(float(score), 8)) for piece, score in json.loads(tok.to_str())["model"]["vocab"]
              if piece not in specials]
    # single characters the trainer keeps for coverage get made-up scores in hash order: a run
    # that starts at the lowest learnt score and steps down (or up) by 1e-4 per character. Give
    # every single character within COVERAGE_WINDOW of the lowest multi-character piece, or below
    # it, one score, one unit below that piece: the same characters on every run, so the same ids
    learnt_floor = min((score for piece, score in pieces if len(piece) > 1), default=0.0)
    pieces = [(piece, round(learnt_floor - 1.0, 8) if len(piece) == 1 and score < learnt_floor + COVERAGE_WINDOW
               else score) for piece, score in pieces]
    head = [(p, 0.0) for p in specials]
    rest = sorted((p for p in pieces if p[0] not in specials), key=lambda p: (-p[1], p[0]))
    return head + rest


def _bpe(texts, vocab_size: int, specials: list[str]) -> tuple[dict, list]:
    """Train a BPE model over ``▁``-marked words (SentencePiece style); returns (vocab, merges).
    Unlike the WordPiece trainer (ties broken in hash order), this gives the same vocabulary on
    every run."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


def wordpiece_vocab(bpe_vocab: dict, specials: list[str]) -> dict[str, int]:
    """A WordPiece vocabulary from ``▁``-marked BPE pieces: ``▁x`` (word start) becomes ``x`` and
    ``x`` (inside a word) becomes ``##x``; every character gets both forms, so no word of the
    training alphabet is unknown."""
    pieces = []
    for piece in sorted(bpe_vocab, key=bpe_vocab.get):
        if piece in specials or piece == "▁":
            continue
        pieces.append(piece[1:] if piece.startswith("▁") else "##" + piece)
    chars = sorted({c for p in pieces for c in p.removeprefix("##")})
    pieces += [c for c in chars] + ["##" + c for c in chars]
    vocab = {}
    for piece in specials + pieces:
        vocab.setdefault(piece, len(vocab))
    return vocab


def train_tokenizer(kind: str, texts: list[str], vocab_size: int = 8000):
    """A tokenizer of family ``kind`` trained on ``texts`` (see the module table)."""
    if kind not in KINDS:
        raise MtnbError(f"unknown tokenizer kind {kind!r}: use one of {', '.join(KINDS)}")
    if kind == "bert":
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        bpe_vocab, _ = _bpe(texts, vocab_size, ["<unk>"])
        pieces = {k: v for k, v in bpe_vocab.items() if k != "<unk>"}
        return BertTokenizer(vocab=wordpiece_vocab(pieces, specials), do_lower_case=False,
                             strip_accents=False, tokenize_chinese_chars=True)
    if kind == "xlm-roberta":
        pieces = _unigram_pieces(texts, vocab_size - 1, ["<s>", "<pad>", "</s>", "<unk>"])
        return XLMRobertaTokenizer(vocab=pieces + [("<mask>", 0.0)])
    if kind == "mbart":
        # MBart50Tokenizer expects SentencePiece order (<unk> <s> </s> first) and appends its
        # language codes and <mask> itself
        pieces = _unigram_pieces(texts, vocab_size, ["<unk>", "<s>", "</s>"])
        return MBart50Tokenizer(vocab=pieces, src_lang="en_XX")

    vocab, merges = _bpe(texts, vocab_size, ["<s>", "<pad>", "</s>", "<unk>"])
    return NllbTokenizer(vocab=vocab, merges=merges, src_lang="eng_Latn")
