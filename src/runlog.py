"""Output folder and logging set-up shared by the entry points."""
import json
import logging
import os
import sys
import tempfile

from src.errors import CPCError


def prepare_output(path):
    """Create the output folder and check it is writable; CPCError otherwise."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise CPCError(f"output_path {path} cannot be written: {exc.strerror or exc}") from None
    return path


def write_json(path, data):
    """Write `data` as indented JSON under a temporary name, then rename (never half written)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
    os.replace(tmp, path)


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
