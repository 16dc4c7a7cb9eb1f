"""Atomic file output: write to a temporary name in the same folder, then rename.

Temporaries are named ``.<target name>.<host>.<pid>-<random>.tmp`` (``<host>``: a hash of the
machine's name). A writer killed with SIGKILL cannot remove its own, so every write of a target
first removes the target's stale temporaries: those of this machine whose process is gone (or a
zombie), or whose pid now belongs to a process started after the temporary was last modified
(the pid was reused). A temporary of a live writer — in this process or a concurrent one, on this
machine or another sharing the folder — is never removed.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import re
import shutil
import socket
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from syncopt.errors import OutputFileError

_HOST = f"{zlib.crc32(socket.gethostname().encode()):08x}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    On any exception the temporary file is removed and ``path`` keeps its old content (or stays
    absent), so a reader never sees a half-written file. A folder that cannot be created or
    written raises :class:`OutputFileError`.
    """
    final = Path(path)
    with _output_errors(final):
        prepare_target(final)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(final), suffix=".tmp", dir=final.parent)
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with _output_errors(final):
            with open(tmp_path, "rb") as f:
                os.fsync(f.fileno())
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode
            os.replace(tmp_path, final)
    finally:
        tmp_path.unlink(missing_ok=True)


def temp_prefix(final: Path) -> str:
    """Prefix of this process's temporaries for ``final`` (see the module docstring)."""
    return f".{final.name}.{_HOST}.{os.getpid()}-"


def prepare_target(final: Path) -> None:
    """Create ``final``'s folder and remove the stale temporaries of earlier, killed writes."""
    final.parent.mkdir(parents=True, exist_ok=True)
    pattern = re.compile(rf"\.{re.escape(final.name)}\.{_HOST}\.(\d+)-[^.]+\.tmp.*")
    for tmp in final.parent.glob(f".{glob.escape(final.name)}.{_HOST}.*.tmp*"):
        match = pattern.fullmatch(tmp.name)
        if match is None or _owner_alive(int(match.group(1)), tmp):
            continue
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def _owner_alive(pid: int, tmp: Path) -> bool:
    """Whether the process ``pid`` may still be writing ``tmp``."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        started = proc.create_time()
        modified = tmp.lstat().st_mtime
    except psutil.NoSuchProcess:
        return False
    except (psutil.AccessDenied, FileNotFoundError):
        return True  # another user's process, or the temporary just went: leave it alone
    return modified >= started - 1.0  # 1 s slack: create_time is derived from boot time and ticks


@contextlib.contextmanager
def _output_errors(final: Path) -> Iterator[None]:
    try:
        yield
    except (FileExistsError, NotADirectoryError) as exc:  # mkdir met a file on the way
        raise OutputFileError(f"cannot write {final}: a file stands where a folder is needed") from exc
    except OSError as exc:
        raise OutputFileError(f"cannot write {final}: {exc.strerror or exc}") from exc


def check_writable(path: str | os.PathLike, folder: bool | None = False) -> None:
    """Raise :class:`OutputFileError` unless ``path`` can be written, before any work is done.

    ``folder``: True for an output folder, False for a file, None for either. The nearest existing
    folder on the way must take a new file: a probe file is created there and removed (the folder's
    timestamps are put back), since permission bits say nothing for root or for /proc-like mounts.
    """
    target = Path(path)
    if target.is_dir():
        if folder is False:
            raise OutputFileError(f"cannot write {target}: a folder stands where the file should go")
        base = target
    elif target.exists() or target.is_symlink():
        if folder:
            raise OutputFileError(f"cannot write {target}: a file stands where a folder is needed")
        base = target.parent
    else:
        base = target.parent
    while not base.exists() and not base.is_symlink() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise OutputFileError(f"cannot write {target}: a file stands where a folder is needed")
    try:
        times = base.stat()
        fd, probe = tempfile.mkstemp(prefix=".syncopt-probe-", dir=base)
        os.close(fd)
        os.unlink(probe)
        os.utime(base, ns=(times.st_atime_ns, times.st_mtime_ns))
    except OSError as exc:
        raise OutputFileError(f"cannot write {target}: {base} does not take new files ({exc.strerror or exc})") from exc


class OutputTarget:
    """typer's parser for an output option: the path, checked by :func:`check_writable` when the
    command line is parsed (exit 15 before any work)."""

    def __init__(self, folder: bool | None) -> None:
        self.folder = folder

    def __call__(self, text: str) -> str:
        check_writable(text, self.folder)
        return text


OUTPUT_FILE, OUTPUT_FOLDER, OUTPUT_FILE_OR_FOLDER = OutputTarget(False), OutputTarget(True), OutputTarget(None)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
