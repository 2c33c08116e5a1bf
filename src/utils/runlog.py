"""Output folder and logging set-up shared by the entry points."""
import json
import logging
import os
import sys
import tempfile
from contextlib import contextmanager

from src.utils.atomic import atomic_write
from src.utils.errors import CPCError, DataError, first_line
from src.utils.paths import require_file, require_folder_target


def prepare_output(path):
    """Create the output folder and check it is writable; CPCError otherwise."""
    require_folder_target(path, "output_path")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise CPCError(f"output_path {path} cannot be written: {exc.strerror or exc}") from None
    return path


LOCK_NAME = ".train.lock"


@contextmanager
def lock_output(path):
    """Hold an exclusive lock on output_path while the block runs, so a second training run into
    the same folder stops with one line. flock(2) locks die with their process, so a run killed
    with kill -9 leaves nothing stuck."""
    import fcntl
    lock_path = os.path.join(path, LOCK_NAME)
    try:
        handle = open(lock_path, "a+", encoding="utf-8")
    except OSError as exc:
        raise CPCError(f"output_path {path} cannot be locked: {exc.strerror or exc}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise CPCError(f"output_path {path} is in use by another training run ({owner}); wait for it to end, "
                       f"or choose another output_path") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    try:
        yield
    finally:
        handle.close()  # releases the lock


def read_json(path, what, advice=""):
    """The JSON object in `path`; DataError (one line naming `what`, then `advice`) when it is missing,
    a folder, empty, damaged or not an object."""
    path = require_file(path, what, DataError)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{what} {path} is damaged (not JSON: {first_line(exc)}){advice}") from None
    if not isinstance(data, dict):
        raise DataError(f"{what} {path} holds no JSON object{advice}")
    return data


def write_json(path, data):
    """Write `data` as indented JSON under a temporary name, then rename (never half written)."""
    with atomic_write(path, "JSON file") as tmp, open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)


def setup_logging(output_path, filename):
    """Log to stdout and to output_path/filename, one timestamped line per event."""
    logger = logging.getLogger("cpc")
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")
    for handler in (logging.StreamHandler(sys.stdout),
                    logging.FileHandler(os.path.join(output_path, filename), encoding="utf-8")):
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    logger.propagate = False
    return logger
