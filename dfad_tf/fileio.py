"""Atomic file output on any filesystem TensorFlow knows (local, gs://, ram://).

Writers (Keras, the TFLite converter, `open`) write into a local scratch path.
The result is then copied beside its destination under a temporary name and
renamed over it with `tf.io.gfile`, so a reader never sees a half-written file
or directory and an interrupted run leaves the previous one intact.
"""

import contextlib
import csv
import json
import os
import posixpath
import tempfile
import uuid

import tensorflow as tf

gfile = tf.io.gfile


@contextlib.contextmanager
def atomic_path(path):
    """Yields a local scratch path; on success its file is renamed into place at `path`.

    The scratch path has `path`'s file name (Keras picks formats by its
    suffixes). Nothing is written at `path` if the body raises.

    Example:
    >>> with atomic_path("gs://bucket/runs/digits/student.keras") as tmp:
    ...     model.save(tmp)
    """
    path = os.fspath(path)
    with tempfile.TemporaryDirectory() as scratch:
        local = os.path.join(scratch, posixpath.basename(path))
        yield local
        temporary = _beside(path)
        try:
            gfile.copy(local, temporary)
            gfile.rename(temporary, path, overwrite=True)
        finally:
            _remove(temporary)


@contextlib.contextmanager
def atomic_directory(path):
    """Like `atomic_path` for a directory (a SavedModel, say).

    The old directory is moved aside, the new one renamed in, then the old one
    deleted; if anything fails the old directory is put back.
    """
    path = os.fspath(path).rstrip("/")
    with tempfile.TemporaryDirectory() as scratch:
        local = os.path.join(scratch, posixpath.basename(path))
        yield local
        temporary, old = _beside(path), None
        try:
            _copy_tree(local, temporary)
            if gfile.exists(path):
                old = _beside(path, ".old")
                _rename_directory(path, old)
            _rename_directory(temporary, path)
        except BaseException:
            if old is not None and not gfile.exists(path):
                _rename_directory(old, path)
                old = None
            raise
        finally:
            _remove(temporary)
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
    path = os.fspath(path)
    if not gfile.exists(path):
        return default
    with gfile.GFile(path) as f:
        return json.load(f)


def read_csv(path):
    """The rows of a CSV file with a header, as dicts of strings."""
    with gfile.GFile(os.fspath(path)) as f:
        return list(csv.DictReader(f))


def exists(path):
    """Whether `path` exists, on any filesystem."""
    return gfile.exists(os.fspath(path))


def is_file(path):
    """Whether `path` exists and is not a directory."""
    return exists(path) and not gfile.isdir(os.fspath(path))


def remove_tree(path):
    """Deletes the directory `path` and everything in it, if it exists."""
    _remove(os.fspath(path))


def _beside(path, suffix=".tmp"):
    """A fresh name in `path`'s directory (created if missing), hidden, ending in `suffix`."""
    parent, base = posixpath.split(path)
    if parent:
        gfile.makedirs(parent)
    return posixpath.join(parent, f".{base}.{uuid.uuid4().hex[:8]}{suffix}")


def _copy_tree(source, destination):
    for parent, _, files in gfile.walk(source):
        target = _under(destination, os.path.relpath(parent, source))
        gfile.makedirs(target)
        for name in files:
            gfile.copy(os.path.join(parent, name), posixpath.join(target, name))


def _rename_directory(source, destination):
    if "://" not in source:  # a local directory renames in one step
        gfile.rename(source, destination)
        return
    # gs:// renames a directory object by object anyway, and ram:// cannot rename directories at all
    for parent, _, files in gfile.walk(source):
        target = _under(destination, posixpath.relpath(parent, source))
        gfile.makedirs(target)
        for name in files:
            gfile.rename(posixpath.join(parent, name), posixpath.join(target, name))
    _remove(source)


def _under(directory, relative):
    return directory if relative == "." else posixpath.join(directory, relative)


def _remove(path):
    if gfile.isdir(path):
        gfile.rmtree(path)
    elif gfile.exists(path):
        gfile.remove(path)
