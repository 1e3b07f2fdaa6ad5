"""Parse the LibreOffice help pages shipped in Debian's ``libreoffice-help-<lang>`` packages.

Each package installs static HTML under ``usr/share/libreoffice/help/<lang>/text/<module>/...``
(``<lang>`` is ``en-US``, ``de``, ``es``, ``fr``, ``ru``, ...).  The same relative file exists in
every language and paragraph-level elements carry ids (``par_id3153969``, ``hd_id3150792``) copied
from the source ``.xhp`` file, so paragraphs align across languages by ``(key, par_id)``.

Only ``html.parser.HTMLParser`` is used to read HTML.  The page is first turned into a tiny
element tree, because OS/application switches (``<span class="switchinline">``) list all their
variants as hidden children and the one to keep is only known once all of them have been seen.
"""

import os
from dataclasses import dataclass, field
from html.parser import HTMLParser

#: ``text/<dir>`` component of the page path -> module name.
MODULES = {"scalc": "calc", "swriter": "writer", "simpress": "impress", "sdraw": "draw",
           "sdatabase": "base", "smath": "math", "schart": "chart", "sbasic": "basic",
           "shared": "shared"}
#: ``class`` of an inline ``<span>`` -> span kind.  ``<a href>`` gives kind ``link``.
SPAN_KINDS = {"menuitem": "menu", "emph": "emph", "literal": "literal", "input": "input",
              "keycode": "key", "productname": "product", "widget": "widget",
              "acronym": "acronym"}
PARA_TAGS = {"p", "h", "h1", "h2", "h3", "h4", "h5", "h6"}
VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
             "param", "source", "track", "wbr"}
BLOCK_TAGS = PARA_TAGS | {"div", "li", "ul", "ol", "table", "tr", "td", "th", "pre", "br"}
SWITCH_CLASSES = {"switch", "switchinline"}


class HelpPageError(ValueError):
    """Raised when a file is not a readable LibreOffice help page; ``.path`` names the file."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass
class Paragraph:
    """One id-carrying paragraph: whitespace-normalised ``text`` and ``spans``.

    ``spans`` holds ``(start, end, kind)`` character offsets into ``text``, sorted by start;
    spans may nest (e.g. ``menu`` inside ``link``).  ``case`` is the variant of an enclosing
    block switch (``"MAC"``, ``"CALC"``, ``"default"``, ...) or None when unconditional.
    Ids are not unique within a page (copy-pasted ids in tables, embedded sections), so ``n``
    counts earlier non-blank paragraphs with the same id: ``(key, par_id, n)`` is unique.
    """
    par_id: str
    text: str
    spans: list = field(default_factory=list)
    tag: str = "p"
    css_class: str = ""
    case: str = None
    n: int = 0


@dataclass
class Page:
    """A parsed help page: ``title``, ``module`` (see MODULES), source ``.xhp`` path and paragraphs."""
    title: str
    module: str
    source: str
    paragraphs: list = field(default_factory=list)

    def by_id(self):
        """Return ``{(par_id, n): Paragraph}``, the alignment key within one page."""
        return {(par.par_id, par.n): par for par in self.paragraphs}


class _Element:
    """Minimal DOM node: ``tag``, ``attrs`` dict and ``children`` (elements and strings)."""

    __slots__ = ("tag", "attrs", "children")

    def __init__(self, tag, attrs):
        self.tag, self.attrs, self.children = tag, attrs, []

    def iter(self):
        """Yield this element and all descendant elements, depth first."""
        yield self
        for child in self.children:
            if isinstance(child, _Element):
                yield from child.iter()

    def text(self):
        """All text below this element, unnormalised."""
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)


class _TreeBuilder(HTMLParser):
    """Build an _Element tree; void tags get no children, stray end tags are ignored."""

    def __init__(self):
        """Start with an empty ``#root`` element (character references are decoded)."""
        super().__init__(convert_charrefs=True)
        self.root = _Element("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        """Append a new element; open it unless it is a void tag."""
        node = _Element(tag, {k: (v if v is not None else "") for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID_TAGS:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        """Handle ``<x/>``: append the element without leaving it open."""
        self.handle_starttag(tag, attrs)
        if tag not in VOID_TAGS:
            self.stack.pop()

    def handle_endtag(self, tag):
        """Close the innermost open ``tag`` (and anything left open inside it)."""
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        """Append text to the current element."""
        self.stack[-1].children.append(data)


class _TextBuilder:
    """Accumulate whitespace-normalised text (all Unicode whitespace, NBSP included -> one space)."""

    def __init__(self):
        """Start empty; ``length`` is the length of the text built so far."""
        self.parts, self.length, self.pending_space = [], 0, False

    def add(self, data):
        """Append ``data``, collapsing whitespace; a trailing space is deferred (``pending_space``)."""
        words = data.split()
        if data[:1].isspace():
            self.pending_space = True
        if words:
            self.flush_space()
            chunk = " ".join(words)
            self.parts.append(chunk)
            self.length += len(chunk)
            self.pending_space = data[-1:].isspace()

    def flush_space(self):
        """Emit a pending space now (only between words, never at the start)."""
        if self.pending_space and self.length:
            self.parts.append(" ")
            self.length += 1
        self.pending_space = False

    def text(self):
        """The normalised text (never starts or ends with a space)."""
        return "".join(self.parts)


def _switch_case(node):
    """Name of a switch case span: its class (``MAC``, ``CALC``...) or ``default``."""
    return node.attrs.get("class") or "default"


def _chosen_case(switch, module):
    """Pick the inline switch variant to keep.

    Preference: the page's own application (``CALC`` on a Calc page), then ``default``, then
    the first case; cases whose text is blank (untranslated) are passed over.
    """
    cases = [c for c in switch.children if isinstance(c, _Element) and "hidden" in c.attrs]
    cases = [c for c in cases if c.text().strip()]
    for wanted in (module.upper(), "default"):
        for case in cases:
            if _switch_case(case) == wanted:
                return case
    return cases[0] if cases else None


def _inline(node, out, spans, module):
    """Append the text of ``node``'s children to ``out``, recording spans into ``spans``."""
    for child in node.children:
        if isinstance(child, str):
            out.add(child)
            continue
        cls = child.attrs.get("class", "")
        if child.tag in BLOCK_TAGS:
            out.pending_space = True
        if child.tag == "span" and cls in SWITCH_CLASSES:
            child = _chosen_case(child, module)
            if child is not None:
                _inline(child, out, spans, module)
            continue
        kind = SPAN_KINDS.get(cls) if child.tag == "span" else None
        if child.tag == "a" and "href" in child.attrs:
            kind = "link"
        if kind is not None:
            out.flush_space()  # keep the separating space outside the span
        start, slot = out.length, len(spans)
        if kind is not None:
            spans.append(None)  # reserve the slot so an outer span precedes its inner spans
        _inline(child, out, spans, module)
        if kind is not None:
            spans[slot] = (start, out.length, kind)
        if child.tag in BLOCK_TAGS:
            out.pending_space = True


def _paragraph(node, case, module):
    """Build a Paragraph from an id-carrying element: normalised text plus trimmed, sorted spans."""
    out, spans = _TextBuilder(), []
    _inline(node, out, spans, module)
    text = out.text()
    clean = []
    for start, end, kind in spans:  # trim spaces at span edges, drop empty spans
        while start < end and text[start] == " ":
            start += 1
        while end > start and text[end - 1] == " ":
            end -= 1
        if start < end:
            clean.append((start, end, kind))
    clean.sort(key=lambda s: (s[0], -s[1]))  # stable: equal extents stay outer-first
    return Paragraph(node.attrs["id"], text, clean, node.tag, node.attrs.get("class", ""), case)


def _collect(node, case, page, seen):
    """Walk block structure below ``node``; every id-carrying paragraph element becomes a Paragraph.

    Block switch cases are all kept, each paragraph labelled with its ``case``; blank paragraphs
    (e.g. icon-only table cells) are dropped.
    """
    for child in node.children:
        if not isinstance(child, _Element):
            continue
        if child.tag in PARA_TAGS and child.attrs.get("id"):
            par = _paragraph(child, case, page.module)
            if par.text:
                par.n = seen[par.par_id] = seen.get(par.par_id, -1) + 1
                page.paragraphs.append(par)
        elif child.tag == "span" and "hidden" in child.attrs:
            _collect(child, _switch_case(child), page, seen)
        else:
            _collect(child, case, page, seen)


def _find(root, tag, **attrs):
    """First element below ``root`` (depth first) with this tag and these attribute values."""
    for node in root.iter():
        if node.tag == tag and all(node.attrs.get(k) == v for k, v in attrs.items()):
            return node
    return None


def module_from_path(path):
    """Module name from a path containing ``text/<dir>/`` (e.g. ``text/scalc/01/x.html`` -> ``calc``)."""
    parts = path.replace("\\", "/").split("/")
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "text" and parts[i + 1] in MODULES:
            return MODULES[parts[i + 1]]
    return None


def parse_html(html, path="<string>"):
    """Parse the HTML source of one help page into a Page; raises HelpPageError if it is not one."""
    builder = _TreeBuilder()
    try:
        builder.feed(html)
        builder.close()
    except Exception as exc:  # HTMLParser is lenient; anything raised here is fatal for the page
        raise HelpPageError(path, f"HTML parser failed: {exc!r}") from exc
    root = builder.root
    area = _find(root, "div", id="DisplayArea")
    if area is None:
        raise HelpPageError(path, "no <div id='DisplayArea'>")
    title_node = _find(root, "title")
    title = " ".join(title_node.text().split()) if title_node is not None else ""
    if not title:
        raise HelpPageError(path, "empty or missing <title>")
    debug = _find(root, "div", id="DEBUG")
    link = _find(debug, "a") if debug is not None else None
    source = link.text().strip() if link is not None else ""
    module = module_from_path(source) or module_from_path(path)
    if module is None:
        raise HelpPageError(path, "cannot determine module")
    page = Page(title, module, source)
    _collect(area, None, page, {})
    return page


def parse_page(path):
    """Read and parse one help ``.html`` file into a Page; raises HelpPageError on failure."""
    try:
        with open(path, encoding="utf-8") as fh:
            html = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise HelpPageError(path, f"cannot read: {exc}") from exc
    return parse_html(html, path)


def help_root(tree_root):
    """Accept a ``dpkg-deb -x`` target or the ``.../libreoffice/help`` dir; return the latter."""
    nested = os.path.join(tree_root, "usr", "share", "libreoffice", "help")
    return nested if os.path.isdir(nested) else tree_root


def iter_pages(tree_root, lang, on_error=None):
    """Yield ``(key, Page)`` for every page of ``lang`` in sorted order.

    ``key`` is the page path relative to the language dir, e.g. ``text/scalc/01/02140100.html``;
    it is identical across languages.  A page that fails raises HelpPageError, unless
    ``on_error(key, exc)`` is given, in which case it is called and the page is skipped.
    """
    lang_dir = os.path.join(help_root(tree_root), lang)
    if not os.path.isdir(os.path.join(lang_dir, "text")):
        raise FileNotFoundError(f"no help pages for {lang!r} under {lang_dir}")
    keys = []
    for dirpath, dirnames, filenames in os.walk(os.path.join(lang_dir, "text")):
        dirnames.sort()
        rel = os.path.relpath(dirpath, lang_dir).replace(os.sep, "/")
        keys.extend(f"{rel}/{name}" for name in filenames if name.endswith(".html"))
    for key in sorted(keys):
        try:
            yield key, parse_page(os.path.join(lang_dir, key))
        except HelpPageError as exc:
            if on_error is None:
                raise
            on_error(key, exc)
