"""Write a file in a private temporary folder beside it, then rename: never half written.

    with atomic_write(path, "checkpoint") as tmp:
        write(tmp)

`tmp` lies in a hidden folder `.<name>.tmp-XXXXXXXX` made for this one write in the target's own
folder: the same filesystem, so the final os.replace is atomic, and a place of its own for what
MindSpore's writers leave on the side (save_checkpoint's own `<name>.tmp` when the disk fills,
the ONNX writer's chmod 0700 of the folder it writes into), which never reach the user's folder.
On success the file replaces `path`; on any failure, or after the rename, the private folder and
everything in it is removed, so `path` is left as it was (the last good file stays). A failing
write (OSError: a full disk, a read-only folder) becomes one WriteError line naming the file and
the cause.
"""
import os
import shutil
import tempfile
from contextlib import contextmanager

from src.utils.errors import CPCError


class WriteError(CPCError):
    """A file could not be written (disk full, no permission, ...)."""


PRIVATE_PREFIX = ".{name}.tmp-"  # the private folder's name: hidden, and matched by no output pattern


@contextmanager
def private_folder(path, what="file"):
    """Yield a fresh private folder in the folder of `path` (removed with its contents afterwards)."""
    folder, name = os.path.split(os.path.abspath(path))
    try:
        private = tempfile.mkdtemp(prefix=PRIVATE_PREFIX.format(name=name), dir=folder)
    except OSError as exc:
        raise WriteError(f"cannot write {what} {path}: {exc.strerror or exc}") from None
    try:
        yield private
    finally:
        shutil.rmtree(private, ignore_errors=True)


@contextmanager
def atomic_write(path, what="file", suffix=""):
    """Yield the temporary path to write (ending in `suffix`, an extension the writer insists on);
    rename it to `path` when the block succeeds."""
    name = os.path.basename(os.path.abspath(path))
    with private_folder(path, what) as private:
        tmp = os.path.join(private, name if name.endswith(suffix) else name + suffix)
        try:
            yield tmp
            os.replace(tmp, path)
        except OSError as exc:
            raise WriteError(f"cannot write {what} {path}: {exc.strerror or exc}") from None
