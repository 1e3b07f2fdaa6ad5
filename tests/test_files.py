"""Atomic writes (mtnb.core.files): what appears under a name is complete, or nothing appears."""

import numpy as np
import pytest

from mtnb.core.files import atomic_file, atomic_folder, save_npy, write_bytes, write_text


def test_a_file_replaces_the_old_one_only_when_complete(tmp_path):
    path = tmp_path / "sub" / "table.csv"
    write_text(path, "a\n1\n")
    with pytest.raises(RuntimeError):
        with atomic_file(path) as tmp:
            tmp.write_text("a\n2\n")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "a\n1\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["table.csv"], "no temporary file left"
    write_text(path, "a\n3\n", sync=True)
    assert path.read_text() == "a\n3\n"


def test_bytes_and_arrays_round_trip(tmp_path):
    write_bytes(tmp_path / "blob", b"\x00\x01")
    assert (tmp_path / "blob").read_bytes() == b"\x00\x01"
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    save_npy(tmp_path / "features.npy", array)
    assert np.array_equal(np.load(tmp_path / "features.npy"), array)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob", "features.npy"]


def test_a_folder_replaces_the_old_one_only_when_complete(tmp_path):
    out = tmp_path / "checkpoint"
    with atomic_folder(out) as tmp:
        (tmp / "config.json").write_text("{}")
    assert (out / "config.json").read_text() == "{}" and oct(out.stat().st_mode & 0o777) == "0o755"
    with pytest.raises(KeyboardInterrupt):
        with atomic_folder(out) as tmp:
            (tmp / "model.safetensors").write_bytes(b"partial")
            raise KeyboardInterrupt
    assert sorted(p.name for p in out.iterdir()) == ["config.json"], "the old checkpoint is kept whole"
    with atomic_folder(out) as tmp:
        (tmp / "model.safetensors").write_bytes(b"new")
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"], "no temporary or old folder left"
