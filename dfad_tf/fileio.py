"""Atomic file output: a reader never sees a half-written file or directory.

Everything is written under a temporary name beside its destination and then
renamed over it, so an interrupted run leaves the previous file intact.
"""

import contextlib
import json
import os
import shutil
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renames it over `path` on success.

    The temporary keeps `path`'s suffixes (Keras picks formats by them). It is
    removed if the body raises.

    Example:
    >>> with atomic_path("student.keras") as tmp:
    ...     model.save(tmp)
    """
    path = os.fspath(path)
    directory, base = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    stem, dot, suffixes = base.partition(".")  # every suffix: Keras wants ".weights.h5" whole
    handle, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{dot}{suffixes}", dir=directory)
    os.close(handle)
    os.remove(tmp)  # writers such as model.save refuse or misbehave on an existing file
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        _remove(tmp)


@contextlib.contextmanager
def atomic_directory(path):
    """Like `atomic_path` for a directory (a SavedModel, say).

    The old directory is moved aside, the new one renamed in, then the old one
    deleted; if anything fails the old directory is put back.
    """
    path = os.path.abspath(os.fspath(path))
    parent, base = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
    shutil.rmtree(tmp)
    old = None
    try:
        yield tmp
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=f".{base}.", suffix=".old", dir=parent)
            os.rmdir(old)
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        if old is not None and not os.path.exists(path):
            os.replace(old, path)
            old = None
        raise
    finally:
        _remove(tmp)
        if old is not None:
            _remove(old)


def write_json(path, value):
    """Writes `value` as indented JSON to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(value, f, indent=2, sort_keys=True)
            f.write("\n")


def read_json(path, default=None):
    """Reads JSON from `path`, or returns `default` if the file does not exist."""
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)


def _remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)
