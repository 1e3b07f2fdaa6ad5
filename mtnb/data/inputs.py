"""From records to model inputs: language codes, input prefixes, token ids, batches.

``encode`` turns a task's records into token ids and labels (one example a record);
``length_grouped_batches`` and ``collate`` make padded batches of similar length;
``set_language`` tells an mBART-50 or NLLB tokenizer the source language; ``input_prefixes``
gives the text a model expects before its inputs (multilingual-e5's "query: " and "passage: ",
``E5_PREFIXES``). Fine-tuning, probing, feature extraction and pretraining all encode through
here, so that a model sees the same inputs in each.
"""

from __future__ import annotations

import random

import torch

from mtnb.data.languages import input_language_code

# multilingual-e5 was trained on inputs that start with one of these
E5_PREFIXES = {"query": "query: ", "passage": "passage: "}


def set_language(tokenizer, spec_lang_codes: str, lang: str) -> str | None:
    """Tell an mBART-50 / NLLB tokenizer the source language (others need nothing). A language
    the model's codes lack (mBART-50: bg, el) is marked with English's code, the fine-tuning
    language's; the note saying so is returned (else None)."""
    if spec_lang_codes != "none" and hasattr(tokenizer, "src_lang"):
        tokenizer.src_lang, note = input_language_code(lang, spec_lang_codes)
        return note
    return None


def input_prefixes(inputs: str, head: str) -> tuple[str, str]:
    """The text put before a model's first and second input segment, by the registry's
    ``inputs`` convention.

    plain: nothing. e5 (multilingual-e5 was trained on "query: ..." and "passage: ..."):
    "query: " before a ranking query, "passage: " before everything else (a text, a sentence's
    words, both sides of a pair, a ranking candidate). One prefix on both sides of symmetric
    inputs, as e5's model card asks, and the prefix of the me5 family's continued pretraining
    (``mtnb.pretraining.e5_family``), so that the features of all its members compare.
    """
    if inputs == "e5":
        return (E5_PREFIXES["query"] if head == "ranking" else E5_PREFIXES["passage"]), E5_PREFIXES["passage"]
    return "", ""


def encode(records, task, tokenizer, max_length: int, prefixes: tuple[str, str] = ("", "")) -> list[dict]:
    """Token ids and labels of every record: ``[{"input_ids": [...], "labels": ...}]``.

    ``labels`` is a list (one per token, -100 where ignored) for token heads and an int
    otherwise; ranking records also keep ``query_id``. Inputs longer than ``max_length``
    tokens are truncated (for pairs, the longer text first). ``prefixes`` (see
    ``input_prefixes``) go before the first and second segment; for token heads the first
    prefix's words go before the sentence's words, labelled -100.
    """
    examples = []
    label_field = task.label_field
    if task.head == "token":
        lead = prefixes[0].split()
        words = [lead + list(r[task.text_fields[0]]) for r in records]
        enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)
        for i, record in enumerate(records):
            tags, labels, previous = record[label_field], [], None
            for word in enc.word_ids(i):
                ignored = word is None or word == previous or word < len(lead)
                labels.append(-100 if ignored else int(tags[word - len(lead)]))
                previous = word
            examples.append({"input_ids": enc["input_ids"][i], "labels": labels})
        return examples
    first, second = prefixes
    segments = [task.segments(r) for r in records]
    if task.head == "sequence":
        enc = tokenizer([first + s[0] for s in segments], truncation=True, max_length=max_length)
    else:
        enc = tokenizer([first + s[0] for s in segments], [second + s[1] for s in segments],
                        truncation="longest_first", max_length=max_length)
    for i, record in enumerate(records):
        example = {"input_ids": enc["input_ids"][i], "labels": int(record[label_field])}
        if task.head == "ranking":
            example["query_id"] = record["query_id"]
        examples.append(example)
    return examples


def length_grouped_batches(lengths: list[int], batch_size: int, rng: random.Random | None) -> list[list[int]]:
    """Indices in batches of similar length. With ``rng`` (training): shuffle, then sort within
    pools of 50 batches by length, cut into batches and shuffle the batches; without (evaluation):
    sorted by length."""
    order = list(range(len(lengths)))
    if rng is None:
        order.sort(key=lambda i: lengths[i])
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(order)
    pool = 50 * batch_size
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(examples: list[dict], pad_id: int, pad_to: int | None = None) -> dict:
    """Pad a batch to its longest sequence (or to ``pad_to``): tensors input_ids, attention_mask
    (batch, seq) and labels ((batch,) or (batch, seq) for token heads, -100 on padding)."""
    width = pad_to or max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    token_labels = isinstance(examples[0]["labels"], list)
    labels = torch.full((len(examples), width), -100, dtype=torch.long) if token_labels else \
        torch.tensor([e["labels"] for e in examples], dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[row, :n] = torch.tensor(e["input_ids"])
        mask[row, :n] = 1
        if token_labels:
            labels[row, :n] = torch.tensor(e["labels"])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
