"""Tests for mtnb.data.mini.libo_help on a hand-written page in the structure of the Debian help HTML."""

import pytest

from mtnb.data.mini.libo_help import HelpPageError, iter_pages, module_from_path, parse_html, parse_page

PAGE = """<!DOCTYPE html>
<html lang="en-US" dir="ltr">
<head>
<base href="../../../../">
<meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<title>Fill  Right</title>
<link type="text/css" href="default.css" rel="Stylesheet">
</head>
<body>
<header id="TopLeftHeader"><a class="logo" href="en-US/text/shared/05/new_help.html"><p dir="auto">LibreOffice 7.4 Help</p></a></header>
<aside class="leftside"><div id="Index"><div class="index-label" dir="auto">Index</div></div></aside>
<div id="DisplayArea" itemprop="softwareHelp" itemscope="true">
  <a name="bm_id1"></a>
<h1 id="hd_id100" dir="auto">Fill Right</h1>
  <p id="par_id200" class="paragraph" dir="auto"><span class="avis">Copies the <span class="emph">left</span>
     cell  to the right.</span></p>
  <a name="howtoget"></a><div class="howtoget">
<div><p class="howtogetheader" dir="auto">To access this command...</p></div>
<div class="howtogetbody"><div class="embedded"><p class="embedded" dir="auto">Choose <span class="emph">Sheet - Fill</span>.</p></div></div>
</div>
<br>
  <p id="par_id300" class="paragraph" dir="auto">Press <span id="swlnsys_1" class="switchinline"><span hidden="true" id="MACsys_1" class="MAC"><span class="keycode">Command</span></span><span hidden="true" id="defaultsys_1"><span class="keycode">Ctrl</span></span></span>+<span class="keycode">R</span> or open <a target="_top" href="en-US/text/scalc/01/x.html"><span class="menuitem">Sheet - Fill Cells</span></a>, type <span class="input" data-tooltip="Click">=A1*2</span> and click <span class="widget">OK</span> in <span class="productname">LibreOffice</span>.</p>
  <p id="par_id400" class="paragraph" dir="auto">Set <span class="literal">Mode</span> to <span id="swlnappl_2" class="switchinline"><span hidden="true" id="WRITERappl_2" class="WRITER">text</span><span hidden="true" id="CALCappl_2" class="CALC">cells</span><span hidden="true" id="defaultappl_2">objects</span></span>.</p>
  <span id="swlnappl_3" class="switch">
    <span hidden="true" id="WRITERappl_3" class="WRITER">
      <p id="par_id500" class="paragraph" dir="auto">Only in Writer.</p>
    </span>
    <span hidden="true" id="defaultappl_3">
      <p id="par_id501" class="paragraph" dir="auto">Everywhere else.</p>
    </span>
  </span>
  <table border="1" cellpadding="4" cellspacing="0">
    <tr><td dir="auto"><p id="par_id600" class="tablecontentintable" dir="auto">1</p></td>
        <td dir="auto"><p id="par_id600" class="tablecontentintable" dir="auto">2</p></td>
        <td dir="auto"><p id="par_id700" class="paragraphintable" dir="auto"><img src="media/x.svg" class="iconimage" alt="Icon"></p></td></tr>
  </table>
 </div>
<div id="SearchFrame"></div>
<footer><div id="DEBUG" class="debug">
<h3 class="bug">Help content debug info:</h3>
<p dir="auto">This page is: <a href="https://opengrok.libreoffice.org/xref/help/source/text/scalc/01/02140300.xhp" target="_blank">/text/scalc/01/02140300.xhp</a></p>
<p dir="auto">Title is: Fill Right</p>
<p id="bm_module" dir="auto"></p>
</div></footer>
</body>
</html>
"""


def spans_text(par):
    return [(par.text[start:end], kind) for start, end, kind in par.spans]


def test_title_module_source():
    page = parse_html(PAGE)
    assert page.title == "Fill Right"
    assert page.module == "calc"
    assert page.source == "/text/scalc/01/02140300.xhp"


def test_paragraph_ids_and_text():
    page = parse_html(PAGE)
    ids = [(p.par_id, p.n) for p in page.paragraphs]
    # header/footer paragraphs, id-less embedded paragraphs and the icon-only cell are skipped
    assert ids == [("hd_id100", 0), ("par_id200", 0), ("par_id300", 0), ("par_id400", 0),
                   ("par_id500", 0), ("par_id501", 0), ("par_id600", 0), ("par_id600", 1)]
    pars = page.by_id()
    assert pars[("hd_id100", 0)].tag == "h1"
    assert pars[("par_id200", 0)].text == "Copies the left cell to the right."
    assert pars[("par_id600", 1)].text == "2"
    assert pars[("par_id600", 1)].css_class == "tablecontentintable"


def test_spans_and_inline_switches():
    pars = parse_html(PAGE).by_id()
    p200 = pars[("par_id200", 0)]
    assert p200.spans == [(11, 15, "emph")]
    p300 = pars[("par_id300", 0)]
    assert p300.text == ("Press Ctrl+R or open Sheet - Fill Cells, type =A1*2 and click OK "
                         "in LibreOffice.")
    assert p300.spans == [(6, 10, "key"), (11, 12, "key"), (21, 39, "link"), (21, 39, "menu"),
                          (46, 51, "input"), (62, 64, "widget"), (68, 79, "product")]
    assert spans_text(p300)[0] == ("Ctrl", "key")
    # on a Calc page the CALC variant of an application switch wins over the default
    p400 = pars[("par_id400", 0)]
    assert p400.text == "Set Mode to cells."
    assert spans_text(p400) == [("Mode", "literal")]


def test_block_switch_cases():
    pars = parse_html(PAGE).by_id()
    assert pars[("par_id500", 0)].case == "WRITER"
    assert pars[("par_id501", 0)].case == "default"
    assert pars[("par_id300", 0)].case is None


def test_module_fallback_and_errors(tmp_path):
    no_footer = PAGE.replace("/text/scalc/01/02140300.xhp</a>", "</a>")
    assert parse_html(no_footer, "x/help/de/text/swriter/guide/a.html").module == "writer"
    assert module_from_path("text/sbasic/python/p.html") == "basic"
    with pytest.raises(HelpPageError, match="title"):
        parse_html(PAGE.replace("<title>Fill  Right</title>", "<title></title>"))
    with pytest.raises(HelpPageError, match="DisplayArea"):
        parse_html(PAGE.replace('id="DisplayArea"', 'id="Other"'))
    bad = tmp_path / "bad.html"
    bad.write_bytes(b"\xff\xfe<html>")
    with pytest.raises(HelpPageError):
        parse_page(str(bad))


def test_iter_pages(tmp_path):
    help_dir = tmp_path / "usr" / "share" / "libreoffice" / "help" / "de" / "text" / "scalc" / "01"
    help_dir.mkdir(parents=True)
    (help_dir / "02140300.html").write_text(PAGE, encoding="utf-8")
    (help_dir / "broken.html").write_text("<html><title>x</title></html>", encoding="utf-8")
    errors = []
    pages = list(iter_pages(str(tmp_path), "de", on_error=lambda key, exc: errors.append(key)))
    assert [key for key, _ in pages] == ["text/scalc/01/02140300.html"]
    assert errors == ["text/scalc/01/broken.html"]
    with pytest.raises(HelpPageError):
        list(iter_pages(str(tmp_path), "de"))
