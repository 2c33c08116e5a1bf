"""User-facing errors: one clear line on stderr and a non-zero exit, never a traceback."""
import argparse
import re
import sys
from contextlib import contextmanager


class CPCError(Exception):
    """Base class of every error a user can cause (bad config, data, checkpoint, device)."""


class ConfigError(CPCError):
    """A configuration key is unknown, of the wrong type or out of range."""


class DataError(CPCError):
    """A data file or folder is missing, truncated or not what was expected."""


class CheckpointError(CPCError):
    """A checkpoint cannot be read or does not fit the network."""


class PeerStopped(CPCError):
    """This rank of a data-parallel job stopped because another rank had stopped: the cause is the
    other rank's (its run status says peer_stopped, so a launcher names the cause instead)."""


EXIT_USER_ERROR = 2  # argparse's own exit code for a usage error: every refusal exits with it


class ArgParser(argparse.ArgumentParser):
    """argparse for every command: a usage error (unknown flag, missing or malformed argument) raises a
    ConfigError, which run_main prints as the one `error: ...` line and exit 2, instead of argparse's
    usage text and its own `prog: error:` line."""

    def error(self, message):
        raise ConfigError(message)


def first_line(exc, fallback=None):
    """The first line of an exception's message, to put into a one-line error; `fallback` (default:
    the exception's type name) when the message is empty."""
    text = str(exc).strip()
    if text:
        return text.splitlines()[0]
    return type(exc).__name__ if fallback is None else fallback


def out_of_memory(exc):
    """What an exception says about memory that ran out (MindSpore's allocator or compiler, NumPy), or
    None when it is about something else."""
    if isinstance(exc, MemoryError):
        return "out of host memory"
    text = str(exc)
    match = re.search(r"Memory isn't enough and alloc failed, kernel name: (\S+?), alloc size: (\d+)B", text)
    if match:
        kernel = match.group(1).rsplit("/", 1)[-1]
        return f"MindSpore could not allocate {int(match.group(2)) / 1e9:.2f} GB for {kernel}"
    if "bad_alloc" in text or "Memory not enough" in text or "MemoryError" in text:
        return "MindSpore ran out of memory compiling or running the graph"
    return None


@contextmanager
def memory_guard(subject, advice):
    """Run the block; memory running out in it becomes one CPCError naming what asked for the memory
    (`subject`: the config keys and their values) and what to do (MindSpore raises a RuntimeError
    with a framework stack, NumPy a MemoryError)."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        why = out_of_memory(exc)
        if why is None:
            raise
        raise CPCError(f"{subject} needs more memory than this machine can give ({why}); {advice}") from None


def batch_guard(key, value, asked=""):
    """memory_guard for a batch size key: '<key> <value> (<asked>) needs more memory ...'."""
    return memory_guard(f"{key} {value}" + (f" ({asked})" if asked else ""), f"use a smaller {key}")


def run_main(main, argv=None):
    """Run an entry point's main(); turn a CPCError into one line on stderr and its exit code (2
    unless the error says otherwise, e.g. a stop request). A main that returns a whole number exits
    with it (tools/run_status.py answers through its exit code)."""
    try:
        code = main(argv)
    except CPCError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", EXIT_USER_ERROR))
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:  # a file operation no CPCError anticipated: still one line, no traceback
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        sys.exit(1)
    if isinstance(code, int) and code:
        sys.exit(code)
