"""The ud-pos task: CoNLL-U -> XGLUE's POS layout (mtnb data ud), its download path, its errors,
its loading through XGLUE's POS loader, and a probe job on it end to end."""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import threading
from dataclasses import replace
from functools import partial
from pathlib import Path

import pandas as pd
import papermill as pm
import pytest
from transformers import AutoTokenizer

from mtnb.cli import main
from mtnb.core.errors import MtnbError
from mtnb.data.inputs import encode
from mtnb.data.loading import aligned_eval_ids, eval_subset, load_task, ud_unit_sentences
from mtnb.data.tasks import get_task
from mtnb.data.ud import (POS_FOLDER, PUD_TREEBANKS, TREEBANKS, build_ud, download_treebanks, pud_halves,
                          read_conllu, treebank_files)
from mtnb.data.xglue import UPOS_TAGS

ROOT = Path(__file__).resolve().parent.parent
SHARED_UD = Path(__file__).resolve().parents[2] / "shared" / "data" / "ud"
needs_shared = pytest.mark.skipif(not SHARED_UD.is_dir(), reason=f"no UD treebanks at {SHARED_UD} "
                                                                  "(../shared/data/ud next to the repository)")
NBSP = "\u00a0"

# A hand-written EWT sentence: comments, a multiword token (2-3), an empty node (4.1), a word with
# a space in it (French-style "10 000") and a SpaceAfter misc field.
EWT_SPECIAL = """# newdoc id = weblog-0001
# sent_id = ewt-0001
# text = We don't cross 10 000.
1\tWe\twe\tPRON\tPRP\t_\t4\tnsubj\t_\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\tVBP\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
4\tcross\tcross\tVERB\tVB\t_\t0\troot\t_\t_
4.1\tcrossed\tcross\tVERB\tVBD\t_\t_\t_\t4:conj\t_
5\t10 000\t10000\tNUM\tCD\t_\t4\tobj\t_\tSpaceAfter=No
6\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

"""
EWT_SPECIAL_LINES = ["We PRON", "do AUX", "n't PART", "cross VERB", f"10{NBSP}000 NUM", ". PUNCT", ""]


def sentence(sent_id: str, words: list[tuple[str, str]], extra_comment: str = "") -> str:
    """One CoNLL-U sentence of ``(form, upos)`` words, each the child of the first."""
    lines = [f"# sent_id = {sent_id}", f"# text = {' '.join(w for w, _ in words)}"] + ([extra_comment] if extra_comment else [])
    for i, (form, upos) in enumerate(words, start=1):
        lines.append("\t".join([str(i), form, form.lower(), upos, "_", "_", "0" if i == 1 else "1",
                                "root" if i == 1 else "dep", "_", "_"]))
    return "\n".join(lines) + "\n\n"


def pud_words(lang: str, i: int) -> list[tuple[str, str]]:
    """A deterministic sentence of 2-5 words for PUD sentence ``i`` in ``lang``."""
    return [(f"{lang}{i}w{k}", UPOS_TAGS[(i + k) % len(UPOS_TAGS)]) for k in range(2 + i % 4)]


def ud_tree(root: Path, pud_sentences: int = 10, ewt_sentences: tuple[int, int] = (3, 2)) -> Path:
    """A folder laid out like ../shared/data/ud: EWT dev and test (the hand-written sentence first
    in dev) and the five PUD treebanks on the same sent_ids; German's file in reverse order."""
    dev = EWT_SPECIAL + "".join(sentence(f"ewt-dev-{i}", [(f"dev{i}", "NOUN"), ("!", "PUNCT")])
                                for i in range(ewt_sentences[0] - 1))
    test = "".join(sentence(f"ewt-test-{i}", [(f"test{i}", "VERB")]) for i in range(ewt_sentences[1]))
    files = {"English-EWT": {"en_ewt-ud-dev.conllu": dev, "en_ewt-ud-test.conllu": test}}
    for lang, name in PUD_TREEBANKS.items():
        order = range(pud_sentences)[::-1] if lang == "de" else range(pud_sentences)
        text = "".join(sentence(f"n0{i:04d}", pud_words(lang, i), f"# text_en = english {i}") for i in order)
        files[name] = {TREEBANKS[name].files[0][0]: text}
    for name, contents in files.items():
        folder = root / TREEBANKS[name].folder
        folder.mkdir(parents=True)
        for file, text in contents.items():
            (folder / file).write_text(text, encoding="utf-8")
        (folder / "LICENSE.txt").write_text(f"licence of {name}\n")
    return root


def read_blocks(path: Path) -> list[list[str]]:
    """The sentences of a written POS file, each its list of lines."""
    return [block.split("\n") for block in path.read_text(encoding="utf-8").strip("\n").split("\n\n")]


def test_conversion_keeps_syntactic_words_and_upos_and_protects_spaces(tmp_path):
    source = ud_tree(tmp_path / "ud")
    manifest = build_ud(tmp_path / "out", source)
    pos = tmp_path / "out" / POS_FOLDER
    assert sorted(p.name for p in pos.iterdir()) == ["de.dev", "de.test", "en.dev", "en.test", "en.train", "es.dev",
                                                     "es.test", "fr.dev", "fr.test", "ru.dev", "ru.test"]
    train = (pos / "en.train").read_text(encoding="utf-8").split("\n")
    assert train[:len(EWT_SPECIAL_LINES)] == EWT_SPECIAL_LINES, "range 2-3 and empty node 4.1 skipped; space -> U+00A0"
    blocks = read_blocks(pos / "en.train")
    assert len(blocks) == 5 and blocks[-1] == ["test1 VERB"], "EWT dev then test, in file order"
    assert all(len(line.split(" ")) == 2 for block in blocks for line in block), "one ASCII space a line"

    dev_ids, test_ids = pud_halves([f"n0{i:04d}" for i in range(10)])
    assert len(dev_ids) == len(test_ids) == 5 and not set(dev_ids) & set(test_ids)
    assert test_ids == sorted(test_ids)
    for lang in PUD_TREEBANKS:    # the same sentences, in the same order, in every language (German's file reversed)
        expected = [[f"{w} {t}" for w, t in pud_words(lang, int(i[2:]))] for i in test_ids]
        assert read_blocks(pos / f"{lang}.test") == expected, lang
        assert manifest["files"][f"{POS_FOLDER}/{lang}.test"]["sent_ids"] == test_ids
    for lang in PUD_TREEBANKS:    # the dev half too: the target-dev oracle reads the other languages'
        assert read_blocks(pos / f"{lang}.dev") == [[f"{w} {t}" for w, t in pud_words(lang, int(i[2:]))]
                                                    for i in dev_ids], lang

    entry = manifest["files"][f"{POS_FOLDER}/en.train"]
    assert (entry["sentences"], entry["tokens"]) == (5, 6 + 2 * 2 + 1 * 2)
    assert entry["from"] == ["UD_English-EWT/en_ewt-ud-dev.conllu", "UD_English-EWT/en_ewt-ud-test.conllu"]
    assert entry["sent_ids"][:2] == ["ewt-0001", "ewt-dev-0"]
    assert entry["sha256"] == hashlib.sha256((pos / "en.train").read_bytes()).hexdigest()
    ewt = manifest["treebanks"]["English-EWT"]
    assert ewt["commit"] == TREEBANKS["English-EWT"].commit and ewt["licence"] == "CC BY-SA 4.0"
    digest = hashlib.sha256((source / "UD_English-EWT" / "en_ewt-ud-dev.conllu").read_bytes()).hexdigest()
    assert ewt["files"]["UD_English-EWT/en_ewt-ud-dev.conllu"] == {"sha256": digest, "pinned": False}
    assert "CC BY-SA" in manifest["licence"] and "Universal Dependencies" in manifest["attribution"]
    assert (tmp_path / "out" / "licences" / "UD_German-PUD" / "LICENSE.txt").read_text() == "licence of German-PUD\n"
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk == manifest


def test_pud_halves_depend_on_the_ids_alone():
    ids = [f"w{i:05d}" for i in range(101)]
    dev, test = pud_halves(ids)
    assert (len(dev), len(test)) == (51, 50) and sorted(dev + test) == ids
    assert pud_halves(ids[::-1]) == (dev, test)
    smallest = sorted(ids, key=lambda s: hashlib.sha256(s.encode()).hexdigest())[:50]
    assert set(test) == set(smallest)


@pytest.mark.parametrize("damage, message", [
    ("no folder", "--from {source}: no such folder"),
    ("no treebank", "{source}/UD_Spanish-PUD/es_pud-ud-test.conllu: not found"),
    ("columns", "{source}/UD_French-PUD/fr_pud-ud-test.conllu:5: 9 tab-separated column(s) where CoNLL-U has 10"),
    ("upos", "{source}/UD_English-EWT/en_ewt-ud-test.conllu:3: UPOS tag 'VERBB' is not one of the 17 UD tags"),
    ("id", "{source}/UD_Russian-PUD/ru_pud-ud-test.conllu:4: ID 'x' is not a word index"),
    ("sent_id", "{source}/UD_English-EWT/en_ewt-ud-dev.conllu:1: a sentence without a '# sent_id = ...' comment"),
    ("not parallel", "{source}/UD_German-PUD/de_pud-ud-test.conllu:{line}: sent_id 'n00099' is not in English PUD"),
])
def test_bad_input_is_one_line_naming_file_and_line_and_writes_nothing(tmp_path, damage, message):
    source = ud_tree(tmp_path / "ud")
    out = tmp_path / "out"
    build_ud(out, source)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    if damage == "no folder":
        shutil.rmtree(source)
    elif damage == "no treebank":
        (source / "UD_Spanish-PUD" / "es_pud-ud-test.conllu").unlink()
    elif damage in ("columns", "upos", "id", "sent_id", "not parallel"):
        path, old, new = {
            "columns": ("UD_French-PUD/fr_pud-ud-test.conllu", "fr0w1\tfr0w1\t", "fr0w1\t"),   # line 5: the 2nd word of the 1st sentence
            "upos": ("UD_English-EWT/en_ewt-ud-test.conllu", "\tVERB\t", "\tVERBB\t"),
            "id": ("UD_Russian-PUD/ru_pud-ud-test.conllu", "1\tru0w0", "x\tru0w0"),
            "sent_id": ("UD_English-EWT/en_ewt-ud-dev.conllu", "# sent_id = ewt-0001\n", ""),
            "not parallel": ("UD_German-PUD/de_pud-ud-test.conllu", "n00003", "n00099"),
        }[damage]
        file = source / path
        text = file.read_text(encoding="utf-8")
        assert old in text
        file.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(MtnbError) as err:
        build_ud(out, source)
    line = 1 + sum(4 + len(pud_words("de", i)) for i in range(4, 10))   # de is reversed: 9 ... 4 come first
    assert str(err.value).startswith(message.format(source=source, line=line)) and "\n" not in str(err.value)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before, "the old build is untouched"
    with pytest.raises(MtnbError):
        build_ud(tmp_path / "new", source)
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".new*")), "nothing written"


def test_the_command_builds_keeps_and_refuses(tmp_path, capsys):
    source = ud_tree(tmp_path / "ud")
    out = tmp_path / "out"
    assert main(["data", "ud", "--from", str(source), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{POS_FOLDER}/en.train" in printed and "5 sentences" in printed
    assert main(["data", "ud", "--from", str(source), "--out", str(out)]) == 0
    assert "already built" in capsys.readouterr().out
    assert main(["data", "ud", "--from", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip().startswith(f"mtnb: error: --from {tmp_path / 'missing'}: no such folder")


@pytest.fixture
def raw_server(tmp_path):
    """A local stand-in for raw.githubusercontent.com: serves ``tmp_path/served`` on 127.0.0.1;
    yields (base URL, folder)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()


def serve(tree: Path, served: Path, treebanks) -> None:
    """Lay ``tree`` (like ../shared/data/ud) out as the raw server does: UD_<name>/<commit>/<file>."""
    for bank in treebanks.values():
        target = served / bank.folder / bank.commit
        target.mkdir(parents=True)
        for file in [name for name, _ in bank.files] + ["LICENSE.txt"]:
            shutil.copyfile(tree / bank.folder / file, target / file)


def test_download_fetches_the_pinned_commits_and_checks_their_hashes(tmp_path, raw_server):
    base, served = raw_server
    tree = ud_tree(tmp_path / "ud")
    pinned = {name: replace(bank, files=tuple((f, hashlib.sha256((tree / bank.folder / f).read_bytes()).hexdigest())
                                              for f, _ in bank.files))
              for name, bank in TREEBANKS.items()}
    serve(tree, served, pinned)
    cache = download_treebanks(tmp_path / "cache", base, pinned)
    for bank in pinned.values():
        for file, _ in bank.files:
            assert (cache / bank.folder / file).read_bytes() == (tree / bank.folder / file).read_bytes()
        assert (cache / bank.folder / "LICENSE.txt").is_file()
    assert treebank_files(cache).keys() == TREEBANKS.keys()
    # a second call finds everything in the cache: the server may be gone
    (served / "UD_German-PUD").rename(served / "gone")
    assert download_treebanks(tmp_path / "cache", base, pinned) == cache
    # a file that is not what the commit holds is refused and not kept; a missing one is named
    shutil.rmtree(cache / "UD_German-PUD")
    (served / "gone").rename(served / "UD_German-PUD")
    damaged = served / "UD_German-PUD" / TREEBANKS["German-PUD"].commit / "de_pud-ud-test.conllu"
    damaged.write_text(damaged.read_text() + "# extra\n")
    with pytest.raises(MtnbError, match="SHA-256 .* is not the pinned"):
        download_treebanks(tmp_path / "cache", base, pinned)
    assert not (cache / "UD_German-PUD" / "de_pud-ud-test.conllu").exists()
    damaged.unlink()
    with pytest.raises(MtnbError, match=r"de_pud-ud-test.conllu: not found; .*mtnb data ud --from"):
        download_treebanks(tmp_path / "cache", base, pinned)
    with pytest.raises(MtnbError, match="not an https://, http://, file: address"):
        download_treebanks(tmp_path / "cache", "ftp://example.org", pinned)


@needs_shared
def test_the_real_pinned_files_download_and_build(tmp_path, raw_server):
    """build_ud without --from, the real TREEBANKS table, served locally from ../shared/data/ud:
    the pinned SHA-256 are those of the shared files, and the build equals the --from build."""
    base, served = raw_server
    serve(SHARED_UD, served, TREEBANKS)
    downloaded = build_ud(tmp_path / "a", cache=tmp_path / "cache", base_url=base)
    local = build_ud(tmp_path / "b", SHARED_UD)
    assert downloaded["downloaded_from"] == base and local["from"] == str(SHARED_UD)
    assert downloaded["files"] == local["files"]
    assert all(f["pinned"] for t in local["treebanks"].values() for f in t["files"].values())


@needs_shared
def test_the_real_treebanks_give_the_issues_counts(tmp_path):
    manifest = build_ud(tmp_path / "ud", SHARED_UD)
    files = manifest["files"]
    assert files[f"{POS_FOLDER}/en.train"]["sentences"] == 2001 + 2077 == 4078
    devs = [files[f"{POS_FOLDER}/{lang}.dev"] for lang in ("en", "de", "es", "fr", "ru")]
    assert [d["sentences"] for d in devs] == [500] * 5 and all(d["sent_ids"] == devs[0]["sent_ids"] for d in devs)
    tests = [files[f"{POS_FOLDER}/{lang}.test"] for lang in ("en", "de", "es", "fr", "ru")]
    assert [t["sentences"] for t in tests] == [500] * 5
    assert all(t["sent_ids"] == tests[0]["sent_ids"] for t in tests), "the same sentences in every language"
    assert not set(tests[0]["sent_ids"]) & set(files[f"{POS_FOLDER}/en.dev"]["sent_ids"])
    # tokens: the syntactic words of the CoNLL-U files (integer IDs), every one written
    for lang in ("en", "fr"):
        name = PUD_TREEBANKS[lang]
        words = {s.sent_id: len(s.words) for s in read_conllu(SHARED_UD / f"UD_{name}" / TREEBANKS[name].files[0][0])}
        assert files[f"{POS_FOLDER}/{lang}.test"]["tokens"] == sum(words[i] for i in tests[0]["sent_ids"])
    records = load_task("ud-pos", "fr", "test", ud_root=tmp_path / "ud")
    assert any(NBSP in w for words in records["words"] for w in words), "French '10 000' keeps its space as U+00A0"


def test_ud_pos_loads_through_xglues_pos_loader(tmp_path):
    task = get_task("ud-pos")
    assert (task.source, task.metric, task.head, task.labels) == ("ud", "accuracy", "token", UPOS_TAGS)
    with pytest.raises(MtnbError, match=r"^no UD POS data at .*: build it with 'mtnb data ud --from ../shared/data/ud'"):
        load_task("ud-pos", "en", "train", ud_root=tmp_path / "none")
    build_ud(tmp_path / "ud", ud_tree(tmp_path / "src"))
    train = load_task("ud-pos", "en", "train", ud_root=tmp_path / "ud")
    assert train.features["pos"].feature.names == list(UPOS_TAGS)
    assert train[0]["words"] == ["We", "do", "n't", "cross", f"10{NBSP}000", "."]
    assert [UPOS_TAGS[t] for t in train[0]["pos"]] == ["PRON", "AUX", "PART", "VERB", "NUM", "PUNCT"]
    assert (train[0]["id"], train[0]["cluster"]) == ("ewt-0001", "ewt-0001"), "records carry their sent_id"
    assert len(load_task("ud-pos", "en", "dev", ud_root=tmp_path / "ud")) == 5
    assert load_task("ud-pos", "de", "dev", ud_root=tmp_path / "ud")["id"] == \
        load_task("ud-pos", "en", "dev", ud_root=tmp_path / "ud")["id"], "the same dev sentences in every language"
    with pytest.raises(MtnbError, match="trains on English only"):
        load_task("ud-pos", "ru", "train", ud_root=tmp_path / "ud")


def test_unit_i_is_one_sentence_in_every_language(tmp_path):
    """ud_unit_sentences names the sentence of each evaluated example, with eval_subset's draw,
    and it is the same list in every language."""
    manifest = build_ud(tmp_path / "ud", ud_tree(tmp_path / "src", pud_sentences=40))
    for max_eval in (None, 7):
        ids = ud_unit_sentences("en", "test", max_eval, root=tmp_path / "ud")
        assert len(ids) == (20 if max_eval is None else 7)
        for lang in PUD_TREEBANKS:
            assert ud_unit_sentences(lang, "test", max_eval, root=tmp_path / "ud") == ids
            drawn = eval_subset(load_task("ud-pos", lang, "test", ud_root=tmp_path / "ud"), max_eval)
            assert [words[0] for words in drawn["words"]] == [f"{lang}{int(i[2:])}w0" for i in ids]
    assert ud_unit_sentences("en", "test", root=tmp_path / "ud") == manifest["files"][f"{POS_FOLDER}/en.test"]["sent_ids"]


@pytest.mark.slow
def test_a_probe_job_on_ud_pos_end_to_end(tiny_checkpoint, tmp_path, monkeypatch):
    """finetune.ipynb (mode probe) then zeroshot.ipynb on ud-pos read from the project's default
    runs/data/ud: a few hundred training sentences, every language scored, units per sentence."""
    project = tmp_path / "project"
    (project / "params").mkdir(parents=True)
    for name in ("models.yaml", "tasks.yaml"):
        shutil.copyfile(ROOT / "params" / name, project / "params" / name)
    monkeypatch.setenv("MTNB_ROOT", str(project))
    source = SHARED_UD if SHARED_UD.is_dir() else ud_tree(tmp_path / "src", pud_sentences=200, ewt_sentences=(200, 100))
    assert main(["data", "ud", "--from", str(source)]) == 0
    job = tmp_path / "job"
    parameters = dict(model=str(tiny_checkpoint), task="ud-pos", mode="probe", probe_layer=-1, seeds=[0],
                      max_train=300, max_dev=60, max_eval=40, max_length=128, output_dir=str(job))
    for notebook, params in (("finetune.ipynb", parameters), ("zeroshot.ipynb", dict(run_dir=str(job), max_eval=40))):
        pm.execute_notebook(str(ROOT / "notebooks" / notebook), str(tmp_path / notebook), parameters=params,
                            kernel_name="python3", cwd=str(ROOT), progress_bar=False)
    record = json.loads((job / "seed-0" / "run.json").read_text())
    assert record["task"] == "ud-pos" and record["mode"] == "probe" and record["n_train"] == 300
    results = pd.read_csv(job / "zeroshot" / "results.csv")
    assert set(results.language) == {"en", "de", "es", "fr", "ru"} and (results.n == 40).all()
    assert set(results.system) == {"model", "majority", "bag-of-subwords"} and results.value.between(0, 100).all()
    units = pd.read_csv(job / "zeroshot" / "units.csv.gz", dtype={"unit": str, "cluster": str})
    ids = ud_unit_sentences("en", "test", 40)
    assert len(ids) == 40 and ids == aligned_eval_ids("ud-pos", ("en", "de", "es", "fr", "ru"), "test", 40)
    for (system, lang), rows in units.groupby(["system", "language"]):
        assert sorted(rows.unit) == sorted(ids), "a unit is a PUD sentence, named by its sent_id in every language"
        assert (rows.cluster == rows.unit).all(), "the sentence is its own cluster"
        value = results.query("system == @system and language == @lang")["value"].item()
        assert 100 * rows.num.sum() / rows.den.sum() == pytest.approx(value)
    # unit <sent_id> is that sentence in every language: its scored words are those of the sentence encoded alone
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    for lang in ("en", "de", "ru"):
        records = load_task("ud-pos", lang, "test")
        position = {sent_id: k for k, sent_id in enumerate(ud_unit_sentences(lang, "test"))}
        rows = units.query("system == 'model' and language == @lang").set_index("unit")
        for sent_id in ids:
            [example] = encode(records.select([position[sent_id]]), get_task("ud-pos"), tokenizer, 128,
                               tuple(record.get("prefixes", ("", ""))))
            assert rows.loc[sent_id, "den"] == sum(label != -100 for label in example["labels"]), (lang, sent_id)
