"""A stand-in for ModelArts' `moxing` package: moxing.file.copy_parallel copies between local folders
(OBS URLs become folders) and records each call, in `calls` and, when FAKE_MOXING_LOG names a file,
one line 'SRC -> DST' there (for a run in another process)."""
import os
import sys

FILE_MODULE = '''import os
import shutil

calls = []


def copy_parallel(src_url, dst_url):
    """As moxing's: the folder tree src_url into dst_url, which is created if absent."""
    calls.append((src_url, dst_url))
    shutil.copytree(src_url, dst_url, dirs_exist_ok=True)
    log = os.environ.get("FAKE_MOXING_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"{src_url} -> {dst_url}\\n")
'''


def write_package(folder):
    """Write the package `moxing` into `folder` (put it on sys.path or PYTHONPATH); returns folder."""
    package = os.path.join(folder, "moxing")
    os.makedirs(package, exist_ok=True)
    with open(os.path.join(package, "__init__.py"), "w", encoding="utf-8") as handle:
        handle.write("from moxing import file  # noqa: F401\n")
    with open(os.path.join(package, "file.py"), "w", encoding="utf-8") as handle:
        handle.write(FILE_MODULE)
    return folder


def install(monkeypatch, folder):
    """Import the stand-in as `moxing` in this process (undone when the test ends); returns moxing.file."""
    monkeypatch.syspath_prepend(write_package(str(folder)))
    for name in ("moxing", "moxing.file"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import moxing
    monkeypatch.setitem(sys.modules, "moxing", moxing)
    monkeypatch.setitem(sys.modules, "moxing.file", moxing.file)
    return moxing.file
