"""The family section of the results page: a family's tables, CKA, separability and SVD against
its base, paired comparisons, and the verdicts of ``mtnb.study.findings``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd

from mtnb.analysis.paired_bootstrap import holm, paired_difference
from mtnb.analysis.separability import last_layer

from mtnb.study.book.collect import Study, pretraining_records
from mtnb.study.book.markdown import figure, md_table, note, prose, save
from mtnb.study.book.svd import svd_summary
from mtnb.study.findings import (MEASURES, ceiling_note, retrieval_evidence, separability_finding, svd_finding,
                                       translation_evidence)
from mtnb.study.outputs import read_table
from mtnb.study.summary import family_pairs, gap_table, normalize, paired_comparisons, REPLICA, table4
from mtnb.study.findings import family_finding, p_text, paired_finding, tasks_that_resolve


def family_section(study: Study, split: str, figures: Path) -> str:
    """The grid's family (``book: {family, base, title}``), per mode when several: a table per
    task, the transfer gap, CKA and SVD against the base, then the paragraph on the paper's
    finding. Its controls are averaged over the family's runs only."""
    book = study.grid.book
    family, base = list(book["family"]), book["base"]
    title = book.get("title") or f"The {base} family"
    mt = [m for m in family if m != base and study.roles.get(m) == "cp"]
    controls = [m for m in family if m not in mt and m != base]
    parts = [f"\n## {title}\n\n",
             prose("family", "intro", base=base, mt=", ".join(mt) or "none", controls=", ".join(controls) or "none",
                   ci_note=prose("results", "ci-note")) + "\n"]
    raw = study.raw[study.raw["model"].isin(family)]
    every_split = normalize(raw) if len(raw) else study.results.iloc[:0]
    rows = every_split[every_split["split"] == split]
    modes = sorted(set(rows.loc[~rows["control"], "mode"]))
    if not modes:
        return "".join(parts) + "\n" + note(prose("family", "no-results"))
    for mode in modes:
        if len(modes) > 1:
            parts.append(f"\n### {mode}\n")
        parts.append(_family_tables(_one_mode(rows, mode), family, "###" if len(modes) == 1 else "####"))
    parts.append(_family_cka(study, family, base, figures))
    parts.append(_family_separability(study, base, mt, controls))
    svd = read_table(study.svds.get(base), "svd")
    parts.append(_family_svd(study, svd, family, base))
    parts.append("\n### What this says about the paper's finding\n\n")
    for mode in modes:
        prefix = f"**{mode}.** " if len(modes) > 1 else ""
        paired = _paired_table(study, family, base, mt, controls, mode, split)
        if paired is not None and len(paired):
            parts.append(prefix + prose("family", "paired-head") + "\n\n" + md_table(_paired_rows(paired), index=False) + "\n")
        parts.append(prefix + family_paragraph(_one_mode(rows, mode), base, mt, controls, svd, paired, protocol=mode,
                                               dev=_one_mode(every_split, mode)) + "\n\n")
    records = pretraining_records(study)
    for evidence in (translation_evidence(records, mt), retrieval_evidence(records, family)):
        if evidence:
            parts.append(evidence + "\n\n")
    return "".join(parts)


def _one_mode(rows, mode: str):
    """The controls and the model rows of one mode, each model row labelled by its model."""
    sub = rows[rows["control"] | (rows["mode"] == mode)].copy()
    sub.loc[~sub["control"], "system"] = sub.loc[~sub["control"], "model"]
    return sub


def _family_tables(table, family: list[str], heading: str) -> str:
    """A table per task (family models and controls, per language) and the transfer gap."""
    parts = []
    for task, sub in table.groupby("task", sort=False):
        parts += [f"\n{heading} {task} ({sub['metric'].iloc[0]})\n\n", md_table(table4(table, task, family))]
    parts += [f"\n{heading} Transfer gap (English minus the other languages)\n\n",
              md_table(gap_table(table, family))]
    return "".join(parts)


def _family_cka(study: Study, family: list[str], base: str, figures: Path) -> str:
    """CKA between each variant and the base per layer (mean over languages), table and plot."""
    pairs = read_table(study.cka, "cka_model_pairs")
    head = f"\n### CKA against {base}, per layer\n\n"
    if pairs is None:
        return head + note(prose("family", "no-cka"))
    per_layer = _cka_to_base(pairs, family, base)
    if per_layer is None:
        return head + note(prose("family", "cka-without-family", base=base))
    path = save(plot_cka_to_base(per_layer, base), figures / "family-cka.png")
    return (head + prose("family", "cka", base=base) + "\n\n" + md_table(per_layer.round(3)) + "\n"
            + figure(path, f"CKA against {base} per layer"))


def _cka_to_base(pairs, family: list[str], base: str):
    """Rows variant, columns layer: CKA with ``base`` (mean over languages); None if absent."""
    rows = pairs[((pairs["model_a"] == base) & pairs["model_b"].isin(family))
                 | ((pairs["model_b"] == base) & pairs["model_a"].isin(family))].copy()
    if rows.empty:
        return None
    rows["variant"] = rows["model_b"].where(rows["model_a"] == base, rows["model_a"])
    table = rows.pivot_table(index="variant", columns="layer", values="cka", aggfunc="mean")
    table = table.reindex([m for m in family if m in table.index])
    table.columns = [f"layer {c}" for c in table.columns]
    return table


def plot_cka_to_base(per_layer, base: str):
    """One line per variant: CKA with the base against the layer."""
    matplotlib.use("Agg")

    fig, ax = plt.subplots(figsize=(5.5, 3.0))
    layers = [int(c.split()[-1]) for c in per_layer.columns]
    for variant, row in per_layer.iterrows():
        ax.plot(layers, row.values, marker="o", ms=3, label=variant)
    ax.set_xticks(layers)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel(f"CKA with {base}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def separability_comparisons(per_sample, base: str, mt: list[str], controls: list[str], *, n_boot: int = 2000,
                             seed: int = 0):
    """Paired comparisons of separability at each model's last layer, over the CKA samples'
    paragraphs: every other family member against ``base``, and every translation member against
    every control, for both measures. Columns ``comparison, measure, difference, low, high, p,
    p_holm`` (points, 95% paired bootstrap interval; Holm's correction across all rows)."""
    last = last_layer(per_sample)
    scores = {(m, measure): rows.sort_values("sample")["score"].to_numpy()
              for (m, measure), rows in last.groupby(["model", "measure"])}
    rows = []
    for a, b in family_pairs(base, mt, controls):
        for measure in MEASURES:
            if (a, measure) in scores and (b, measure) in scores:
                d = paired_difference(scores[(a, measure)], scores[(b, measure)], n_boot=n_boot, seed=seed)
                rows.append(dict(comparison=f"{a} − {b}", a=a, b=b, measure=measure, difference=d.mean,
                                 low=d.low, high=d.high, p=d.p))
    table = pd.DataFrame(rows, columns=["comparison", "a", "b", "measure", "difference", "low", "high", "p"])
    table["p_holm"] = holm(table["p"].to_numpy()) if len(table) else []
    return table


def _family_separability(study: Study, base: str, mt: list[str], controls: list[str]) -> str:
    """Separability of the family's members against the base and the controls, paired."""
    head = "\n### Separability by language: the paper's explanation, measured\n\n"
    per_sample = read_table(study.cka, "separability_samples")
    if per_sample is None:
        return head + note(prose("family", "no-separability"))

    table = separability_comparisons(per_sample, base, mt, controls)
    if table.empty:
        return head + note(prose("family", "separability-without-family", base=base))
    shown_table = table.assign(measure=table["measure"].map(MEASURES),
                               difference=[f"{r.difference:+.1f} [{r.low:+.1f}, {r.high:+.1f}]"
                                           for r in table.itertuples()],
                               p_holm=table["p_holm"].map(lambda v: p_text(v)))
    shown_table = shown_table.pivot(index="comparison", columns="measure", values=["difference", "p_holm"])
    shown_table.columns = [f"{measure}: {'Δ (points)' if what == 'difference' else 'p (Holm)'}"
                           for what, measure in shown_table.columns]
    order = list(dict.fromkeys(table["comparison"]))
    return (head + prose("family", "separability") + "\n\n" + md_table(shown_table.reindex(order)) + "\n"
            + separability_finding(table, base, mt) + ceiling_note(per_sample, [base, *mt]) + "\n")


def _family_svd(study: Study, table, family: list[str], base: str) -> str:
    """The SVD distance of each variant to the base (``table``: the SVD job's table against
    ``base``, or None): mean d per matrix over layers, and the last layer (Table 2's layout)."""
    head = f"\n### SVD: how far each model's weights moved from {base}\n\n"
    if not study.svds:
        return head + note(prose("family", "no-svd"))
    if table is None:
        return head + note(prose("family", "svd-other-base", base=base, bases=", ".join(study.svds)))
    table = table[table["model"].isin(family) & (table["model"] != base)]
    if table.empty:
        return head + note(prose("family", "svd-without-family", base=base))
    return (head + prose("family", "svd", base=base) + "\n\n"
            + md_table(svd_summary(table, family)))


def _paired_table(study: Study, family: list[str], base: str, mt: list[str], controls: list[str], mode: str,
                 split: str):
    """``summary.paired_comparisons`` of the family's comparisons on one mode and split, from the
    zero-shot jobs' per-example scores; None when the jobs wrote none."""
    if study.units is None:
        return None
    units = study.units
    member = units["model"].astype(str).str.extract(REPLICA)["member"].fillna(units["model"].astype(str))
    units = units[(units["system"] == "model") & (units["mode"] == mode) & (units["split"] == split)
                  & member.isin(family)]
    return paired_comparisons(units, family_pairs(base, mt, controls)) if len(units) else None


def _paired_rows(paired):
    """The paired comparisons as a table to read: one row per comparison and task."""
    return paired.assign(comparison=paired["a"] + " − " + paired["b"],
                         scores=[f"{r.a_score:.1f} vs {r.b_score:.1f}" for r in paired.itertuples()],
                         difference=[f"{r.difference:+.1f} [{r.low:+.1f}, {r.high:+.1f}]" for r in paired.itertuples()],
                         p_holm=paired["p_holm"].map(lambda v: p_text(v)))[
        ["comparison", "task", "scores", "difference", "p_holm"]].rename(columns={"p_holm": "p (Holm)"})


def family_paragraph(table, base: str, mt: list[str], controls: list[str], svd=None, paired=None,
                     protocol: str = "finetune", dev=None) -> str:
    """The family's verdict: ``mtnb.study.findings.paired_finding`` when the zero-shot jobs wrote
    per-example scores (``paired``), on the tasks that clear the English dev check
    (``tasks_that_resolve`` on ``dev``, the rows of every split), else ``family_finding`` from the
    intervals over seeds; plus, when the SVD table ``svd`` (against ``base``) has the family,
    which translation variant moved furthest from the base. Only a ``protocol`` of fine-tuning,
    the paper's, is compared with the paper."""
    if paired is not None and len(paired):
        tasks = list(dict.fromkeys(paired["task"]))
        kept, dropped = tasks_that_resolve(dev if dev is not None else table, base, tasks)
        text = paired_finding(paired, base, mt, controls, tasks=kept, dropped=dropped, protocol=protocol)
    else:
        text = family_finding(table, base, mt, controls, protocol=protocol)
    return text + svd_finding(svd, base, mt)
