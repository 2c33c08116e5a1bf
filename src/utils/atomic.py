"""Write a file under a temporary name next to it, then rename: never half written.

    with atomic_write(path, "checkpoint") as tmp:
        write(tmp)

On success the temporary file replaces `path`; on any failure it is removed and `path` is left as
it was (the last good file stays). A failing write (OSError: a full disk, a read-only folder)
becomes one WriteError line naming the file and the cause.
"""
import os
import shutil
from contextlib import contextmanager

from src.utils.errors import CPCError


class WriteError(CPCError):
    """A file could not be written (disk full, no permission, ...)."""


def temporary_name(path, suffix=""):
    """The hidden temporary name of `path` in its folder (suffix: an extension the writer insists on)."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.tmp-{os.getpid()}{suffix}")


def _remove(tmp):
    if os.path.isdir(tmp) and not os.path.islink(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
    elif os.path.lexists(tmp):
        os.remove(tmp)


@contextmanager
def atomic_write(path, what="file", suffix=""):
    """Yield the temporary path to write; rename it to `path` when the block succeeds."""
    tmp = temporary_name(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise WriteError(f"cannot write {what} {path}: {exc.strerror or exc}") from None
    finally:
        _remove(tmp)
