"""Paths as people write them: `~` expanded, and a file or a folder checked to be what is expected
before anything is read or written, each failure one line naming the path."""
import os

from src.utils.errors import CPCError


def expand(path):
    """`~` and `~user` expanded (the shell does not expand them inside YAML or after `--key=`)."""
    return os.path.expanduser(path) if isinstance(path, str) and path else path


def require_file(path, what, error=CPCError, allow_empty=False):
    """`path` (expanded) if it is a non-empty readable file; else `error` naming `what` and why."""
    path = expand(path)
    if os.path.isdir(path):
        raise error(f"{what} {path} is a folder, not a file")
    if not os.path.isfile(path):
        raise error(f"{what} not found: {path}")
    if not allow_empty and os.path.getsize(path) == 0:
        raise error(f"{what} {path} is empty (0 bytes)")
    return path


def require_folder_target(path, what, error=CPCError):
    """`path` (expanded) if it is a folder or can become one; `error` when it is an existing file."""
    path = expand(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise error(f"{what} {path} is an existing file, not a folder")
    return path
