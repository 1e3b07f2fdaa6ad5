"""The SVD page: a section per SVD job, the paper's Table 5 layout beside ours.
"""

from __future__ import annotations

from pathlib import Path

from mtnb.analysis.svd import MATRICES, table5_layout
from mtnb.study import paper
from mtnb.study.book.collect import Study
from mtnb.study.book.markdown import copy_figure, figure, md_table, note, prose
from mtnb.study.grids import shown
from mtnb.study.outputs import figure_path, output_path, read_table


def svd_page(study: Study, figures: Path) -> str:
    """Each SVD job's Table 2 and Table 5 layouts (with the paper's values for mBART) and plot."""
    parts = [prose("svd", "intro") + "\n"]
    if not study.svds:
        return parts[0] + "\n" + note("No finished SVD job" + ("" if "svd" in study.grid.sections
                                                                else ": the grid has no svd section") + ".")
    for i, (base, out) in enumerate(study.svds.items()):
        parts.append(_svd_section(base, out, figures, f"svd-{i}.png"))
    return "".join(parts)


def _svd_section(base: str, out: Path, figures: Path, figure_name: str) -> str:
    """One SVD job: the last layer, the mean distance per matrix, every layer, the plot."""
    table = read_table(out, "svd")
    models = list(dict.fromkeys(table["model"])) if table is not None else []
    parts = [f"\n## {', '.join(m for m in models if m != base) or 'models'} against {base}\n"]
    if table is None:
        return parts[0] + "\n" + note(prose("svd", "no-table", path=shown(output_path(out, "svd"))))
    published = None
    if base == "mbart" and set(models) <= set(paper.PAPER_MODELS):
        published = paper.svd_tables()
        published = published[published["model"].isin(models)]
        parts.append("\n" + prose("svd", "paper-columns") + "\n")
    last = int(table["layer"].max())
    parts += [f"\n### The last layer ({last}; Table 2 layout)\n\n",
              md_table(table5_layout(table[table["layer"] == last], published)),
              "\n### Mean distance to the base over layers, per matrix\n\n",
              md_table(svd_summary(table[table["model"] != base], models)),
              "\n### Every layer (Table 5 layout)\n\n", md_table(table5_layout(table, published))]
    path = copy_figure(figure_path(out, "svd_figure"), figures, figure_name)
    parts.append("\n" + (figure(path, f"norm of singular values per layer, against {base}") if path
                         else note(prose("svd", "no-figure"))))
    return "".join(parts)


def svd_summary(table, models: list[str]):
    """Rows model: the mean d per matrix over layers, over all matrices, and at the last layer."""
    last = table["layer"].max()
    out = table.pivot_table(index="model", columns="matrix", values="distance", aggfunc="mean")
    out = out.reindex(columns=[m for m in MATRICES if m in out.columns]).add_prefix("mean d ")
    out["mean d, all"] = table.groupby("model")["distance"].mean()
    out[f"mean d, layer {last}"] = table[table["layer"] == last].groupby("model")["distance"].mean()
    return out.reindex([m for m in models if m in out.index]).round(3)
