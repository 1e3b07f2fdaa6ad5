"""Markdown pieces every page uses: pipe tables, note boxes, figures, and the page templates
(``templates/<page>.md``) that hold each page's fixed prose.
"""

from __future__ import annotations

import functools
import math
import re
import shutil
import string
from pathlib import Path

import matplotlib.pyplot as plt

TEMPLATES = Path(__file__).resolve().parent / "templates"
SECTION = re.compile(r"^<!-- (?P<name>[\w-]+) -->\n", re.M)


def md_table(table, index: bool = True) -> str:
    """A pandas DataFrame as a Markdown pipe table (a MultiIndex's levels joined by spaces;
    floats as ``{:g}``: round them first)."""
    frame = table.reset_index() if index else table

    def cell(value) -> str:
        if isinstance(value, float):
            value = "" if math.isnan(value) else f"{value:g}"
        return str(value).replace("|", "\\|").replace("\n", " ").replace(" ± ", "\u00a0±\u00a0")

    header = [" ".join(str(c) for c in col).strip() if isinstance(col, tuple) else str(col) for col in frame.columns]
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def note(text: str) -> str:
    """A MyST note box."""
    return f"```{{note}}\n{text}\n```\n"


def warning(text: str) -> str:
    """A MyST warning box."""
    return f"```{{warning}}\n{text}\n```\n"


def figure(path: Path, alt: str) -> str:
    """A Markdown image of a file in figures/."""
    return f"![{alt}](figures/{path.name})\n"


def save(fig, path: Path) -> Path:
    """Write a matplotlib figure as PNG and close it."""
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def copy_figure(source: Path | None, figures: Path, name: str) -> Path | None:
    """Copy a job's PNG into figures/ as ``name``; None when the job did not write it."""
    if source is None or not source.is_file():
        return None
    return Path(shutil.copyfile(source, figures / name))


def seconds(value: float) -> str:
    """``12.3 s`` or ``4.1 min``."""
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


@functools.cache
def template_sections(page: str) -> dict[str, str]:
    """The sections of ``templates/<page>.md``: each is the text from a line ``<!-- name -->`` to
    the next such line, without its leading and trailing blank lines (the page code places the
    newlines around it)."""
    text = (TEMPLATES / f"{page}.md").read_text(encoding="utf-8")
    marks = list(SECTION.finditer(text))
    return {m["name"]: text[m.end():(marks[i + 1].start() if i + 1 < len(marks) else len(text))].strip("\n")
            for i, m in enumerate(marks)}


def prose(page: str, section: str, **values) -> str:
    """Section ``section`` of page ``page``'s template, its ``$name`` fields filled from ``values``
    (a field without a value is an error: a template and its page code must agree)."""
    return string.Template(template_sections(page)[section]).substitute(values)
