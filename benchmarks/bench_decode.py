"""Greedy decoding of the e5 translation members: key/value cache and length cap against recomputing.

The model is what an e5 translation member decodes with: multilingual-e5-small's encoder and a
fresh 2-layer decoder over the mini corpus's output vocabulary (``mtnb.pretraining.e5_family``, the
``mini`` budget's shape, max_length 48), left untrained and with ``</s>`` forbidden, so every
sentence runs to its cap, as those of an undertrained member mostly do. It translates the first
60 German test sentences of the mini corpus into English (one of the 8 directions of a chrF
table; a member decodes 16 such lists) in batches of 16, three ways:

- recompute, cap 48: every step runs the decoder over the whole prefix and keeps the last
  position (what ``greedy_translate`` did before the cache), 48 tokens per sentence;
- cache, cap 48: ``Decoder.step`` with the keys and values of earlier positions kept;
- cache, cap 2n + 8: ``greedy_translate`` as it is (``decode_limit``), sources sorted by length.

Figures are medians over --repeats of each way's wall seconds, in one process after an untimed
warm-up, and ratios against the first way measured in the same repeat; torch on one thread (a
job's setting in ``mtnb run --jobs 2`` on 2 cores).

    python benchmarks/bench_decode.py [--repeats 3] [--corpus runs/data/mini]
                                      [--out runs/benchmarks/decode.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def encoded_batches(model, tokenizer, sources: list[str], max_length: int, batch_size: int = 16):
    """(memory (batch, n, d), padding (batch, n)) per batch of ``sources``, as greedy_translate
    encodes them."""
    from mtnb.pretraining.e5_family import PREFIX

    for i in range(0, len(sources), batch_size):
        enc = tokenizer([PREFIX + s for s in sources[i:i + batch_size]], truncation=True,
                        max_length=max_length, padding=True, return_tensors="pt")
        yield model.encode(enc["input_ids"], enc["attention_mask"]), enc["attention_mask"] == 0


def recompute_greedy(model, tokenizer, vocab, sources: list[str], tgt_lang: str, max_length: int) -> int:
    """The decoding loop without a cache: the whole prefix through the decoder at every step,
    ``max_length`` steps (no sentence ends: ``</s>`` is forbidden). Returns the tokens written."""
    import torch

    written = 0
    with torch.inference_mode():
        for memory, padding in encoded_batches(model, tokenizer, sources, max_length):
            tokens = torch.full((len(memory), 1), vocab.lang[tgt_lang])
            for _ in range(max_length):
                nxt = model.head.logits(model.head(tokens, memory, padding)[:, -1]).argmax(-1)
                tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            written += tokens[:, 1:].numel()
    return written


def cached_greedy(model, tokenizer, vocab, sources: list[str], tgt_lang: str, max_length: int) -> int:
    """The same with ``Decoder.step`` and its cache, ``max_length`` steps. Returns the tokens written."""
    import torch

    written = 0
    with torch.inference_mode():
        for memory, padding in encoded_batches(model, tokenizer, sources, max_length):
            cache = model.head.start(memory, padding)
            token = torch.full((len(memory),), vocab.lang[tgt_lang])
            for t in range(max_length):
                token = model.head.step(token, t, cache).argmax(-1)
                written += len(token)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--corpus", type=Path, default=ROOT / "runs" / "data" / "mini")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "benchmarks" / "decode.json")
    args = parser.parse_args()

    import torch

    from mtnb.pretraining import e5_family as e5c
    from mtnb.pretraining import heads
    from mtnb.pretraining.members import E5_BUDGETS, LANGS
    from mtnb.models.me5 import ensure_me5_small
    from mtnb.data.mini.datasets import load_mini
    from mtnb.models.loading import load_encoder

    torch.set_num_threads(1)
    budget = E5_BUDGETS["mini"]
    encoder = load_encoder(str(ensure_me5_small()))
    tokenizer, bert = encoder.tokenizer, encoder.model
    mono = {lang: load_mini("monolingual", lang, "train", root=args.corpus)["text"] for lang in LANGS}
    parallel = {lang: load_mini("parallel", lang, "train", root=args.corpus).to_list() for lang in LANGS[1:]}
    vocab = e5c.corpus_vocabulary(tokenizer, args.corpus, mono, parallel, budget.max_length)
    torch.manual_seed(0)
    word = bert.embeddings.word_embeddings.weight.detach()[torch.from_numpy(vocab.kept)].clone()
    decoder = heads.Decoder(word, len(LANGS), budget.decoder_layers, bert.config.num_attention_heads,
                              budget.max_length)
    with torch.no_grad():
        decoder.bias[vocab.eos] = -1e4  # no sentence ends before its cap
    model = heads.Continued(bert, decoder, "m2o").eval()
    sources = [r["de"] for r in load_mini("parallel", "de", "test", root=args.corpus).to_list()[:60]]

    ways = {
        "recompute, cap 48": lambda: recompute_greedy(model, tokenizer, vocab, sources, "en", budget.max_length),
        "cache, cap 48": lambda: cached_greedy(model, tokenizer, vocab, sources, "en", budget.max_length),
        "cache, cap 2n+8": lambda: len(e5c.greedy_translate(model, tokenizer, vocab, sources, "en",
                                                            budget.max_length)),
    }
    for way in ways.values():  # warm-up
        way()
    seconds = {name: [] for name in ways}
    ratios = {name: [] for name in ways}
    for _ in range(args.repeats):
        for name, way in ways.items():
            start = time.perf_counter()
            way()
            seconds[name].append(time.perf_counter() - start)
        base = seconds["recompute, cap 48"][-1]
        for name in ways:
            ratios[name].append(seconds[name][-1] / base)
    pieces = [len(ids) for ids in tokenizer(sources, add_special_tokens=False)["input_ids"]]
    report = {"sentences": len(sources), "direction": "de-en", "output_vocabulary": int(vocab.size),
              "decoder_layers": budget.decoder_layers, "max_length": budget.max_length, "threads": 1,
              "repeats": args.repeats,
              "tokens_written": {"cap 48": 48 * len(sources),
                                 "cap 2n+8": sum(e5c.decode_limit(n, budget.max_length) for n in pieces)},
              "seconds": {k: statistics.median(v) for k, v in seconds.items()},
              "time_vs_recompute": {k: statistics.median(v) for k, v in ratios.items()}}
    for name in ways:
        print(f"{name:<20} {report['seconds'][name]:6.2f} s   {report['time_vs_recompute'][name]:.2f} x recompute "
              f"(median of {args.repeats})")
    print(f"tokens written: {report['tokens_written']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
