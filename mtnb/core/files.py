"""Atomic writes: a file or folder appears complete under its name, or not at all.

Everything the study computes is written to a temporary name beside its destination (same
folder, so the final rename stays on one file system and is atomic), then renamed into place.
A run killed mid-write leaves at most a hidden ``.<name>.<pid>.tmp`` behind, never a truncated
file that a later run would take as finished.

- ``atomic_file(path)``: a context manager yielding the temporary path to write; on success it
  is renamed to ``path`` (replacing what was there), on an exception removed.
- ``write_text``, ``write_bytes``, ``save_npy``: one call each, through ``atomic_file``.
- ``atomic_folder(path)``: the same for a folder (a checkpoint), replacing an old one only
  after the new one is complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def temporary_name(path: Path) -> Path:
    """``.<name>.<pid>.tmp`` beside ``path``: hidden, and distinct for concurrent writers."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block ends without
    an exception (creating the parent folder first), else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str, sync: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; with ``sync``, flushed to the disk
    (fsync) before the rename, so that it survives a crash of the machine too."""
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        if sync:
            f.flush()
            os.fsync(f.fileno())


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def save_npy(path: str | Path, array: np.ndarray) -> None:
    """``np.save`` ``array`` to ``path`` (its exact name, no ``.npy`` added) atomically."""
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a new, empty temporary folder beside ``path``; when the block ends without an
    exception it becomes ``path`` (an existing ``path`` is moved aside first and deleted after),
    else it is deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a checkpoint is read by others
    try:
        yield tmp
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's content, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
