"""The pretraining page: what each pretrain job trained and what it learned.
"""

from __future__ import annotations

import pandas as pd

from mtnb.study.book.collect import Study, pretraining_records
from mtnb.study.book.markdown import md_table, note, prose
from mtnb.study.findings import BLIND_MARGIN, translation_bars


def pretraining_page(study: Study) -> str:
    """Per member: objective, steps, tokens, speed, held-out loss; chrF per direction of every
    member with a decoder, beside copying the source and (e5) a mismatched source."""
    parts = [prose("pretraining", "intro") + "\n"]
    records = pretraining_records(study)
    if not records:
        return parts[0] + "\n" + note(prose("pretraining", "none"))
    rows = [{"member": m, "objective": r["objective"] + (f" ({r['directions']})" if r.get("directions") else ""),
             "steps": r["trained"]["steps"], "tokens": r["trained"]["tokens"],
             "seconds": round(r["trained"]["seconds"]), "tokens/s": round(r["tokens_per_second"] or 0),
             "held-out loss before": round(r["heldout_loss_before"], 2),
             "after": round(r["heldout_loss_after"], 2)} for m, r in records.items()]
    parts += ["\n## Training\n\n", md_table(pd.DataFrame(rows), index=False)]
    staged = [{"member": m, "stage": {"warmup": "1: head alone" + (", shared (loaded)" if stage.get("loaded") else ""),
                                      "joint": "2: encoder and head"}.get(name, name),
               "frozen": stage.get("frozen", ""), "steps": stage["steps"], "tokens": stage["tokens"],
               "seconds": round(stage["seconds"]), "held-out loss before": round(stage["heldout_loss_before"], 2),
               "after": round(stage["heldout_loss_after"], 2)}
              for m, r in records.items() for name, stage in (r.get("stages") or {}).items()]
    if staged:
        parts += ["\n## The two stages of the e5 family\n\n",
                  prose("pretraining", "stages") + "\n\n", md_table(pd.DataFrame(staged), index=False)]
    chrf = {m: r for m, r in records.items() if r.get("chrf")}
    if chrf:
        table = {}
        for m, r in chrf.items():
            table[m] = r["chrf"]
            if r.get("chrf_mismatched_source"):
                table[f"{m}, mismatched source"] = r["chrf_mismatched_source"]
        # copying the source, on as many test pairs as each member was scored on
        sizes = {r["budget"].get("eval_pairs"): r["chrf_copy_source"] for r in chrf.values()
                 if r.get("chrf_copy_source") and isinstance(r.get("budget"), dict)}
        for n, copy in sizes.items():
            table["copy the source" + (f" (first {n} pairs)" if len(sizes) > 1 else "")] = copy
        frame = pd.DataFrame(table).T.round(1)
        frame.index.name = "system"
        parts += ["\n## Translation: chrF per direction\n\n",
                  prose("pretraining", "chrf") + "\n\n", md_table(frame)]
        bars = {m: translation_bars(r) for m, r in chrf.items()}
        bars = {m: b for m, b in bars.items() if b}
        if bars:
            marks = pd.DataFrame({m: {d: ("copy " + ("yes" if c else "no") + f", mismatched + {BLIND_MARGIN:.0f} "
                                          + ("yes" if x else "no")) for d, (c, x) in b.items()}
                                  for m, b in bars.items()}).T.fillna("")
            marks.index.name = "member"
            parts += ["\n### The bars, direction by direction\n\n",
                      prose("pretraining", "bars", margin=f"{BLIND_MARGIN:.0f}") + "\n\n",
                      md_table(marks)]
    retrieval = {m: r for m, r in records.items() if r.get("retrieval_after")}
    if retrieval:
        base = next(iter(retrieval.values()))["retrieval_before"]
        frame = pd.DataFrame({"base (before)": base, **{m: r["retrieval_after"] for m, r in retrieval.items()}}).T.round(1)
        frame.index.name = "encoder"
        parts += ["\n## Translation retrieval\n\n",
                  prose("pretraining", "retrieval") + "\n\n", md_table(frame)]
    return "".join(parts)
