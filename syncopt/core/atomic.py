"""Atomic file output: write to a temporary name in the same folder, then rename.

Temporaries are named ``.<target name>.<host>.<pid>-<random>.tmp`` (``<host>``: a hash of the
machine's name). A writer killed with SIGKILL cannot remove its own, so every write of a target
first removes the target's stale temporaries: those of this machine whose process is gone (or a
zombie), or whose pid now belongs to a process started after the temporary was last modified
(the pid was reused). A temporary of a live writer — in this process or a concurrent one, on this
machine or another sharing the folder — is never removed. A target name too long to take the
suffixes is shortened in its temporaries' names (``<start>~<crc32>``), so they stay within the
255-byte limit on a file name.

Scratch folders (an ONNX copy and a SavedModel for TFLite, a bundle being assembled ...) live in
one folder per process, ``<system temp>/syncopt-<uid>/<host>.<pid>-<random>/<kind>-<random>``;
the folders of processes that are gone are swept, by the same rule, when the next one is made.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from syncopt.core.errors import OutputFileError

_HOST = f"{zlib.crc32(socket.gethostname().encode()):08x}"
NAME_MAX = 255  # bytes in one file name (ext4, xfs, btrfs, tmpfs, APFS)
# what a temporary adds to the target's name: "." "." host "." pid (Linux: at most 7 digits) "-" 8 random ".tmp"
_TEMP_EXTRA = 1 + 1 + len(_HOST) + 1 + 7 + 1 + 8 + len(".tmp")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    On any exception the temporary file is removed and ``path`` keeps its old content (or stays
    absent), so a reader never sees a half-written file. A folder that cannot be created or
    written, or a write that fails for want of space (``torch.save``'s and safetensors' errors
    included), raises :class:`OutputFileError` naming ``path``.
    """
    final = Path(path)
    with _output_errors(final):
        prepare_target(final)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(final), suffix=".tmp", dir=final.parent)
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        with _write_errors(final):
            yield tmp_path
        with _output_errors(final):
            with open(tmp_path, "rb") as f:
                os.fsync(f.fileno())
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode
            os.replace(tmp_path, final)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` by rename.

    A reader sees the old directory or the complete new one; on an exception ``path`` is untouched.
    Failed writes raise :class:`OutputFileError` as in :func:`atomic_path`.
    """
    final = Path(path)
    with _output_errors(final):
        prepare_target(final)
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(final), suffix=f".tmp{final.suffix}", dir=final.parent))
    old = final.parent / f".{_temp_stem(final)}.old"
    shutil.rmtree(old, ignore_errors=True)  # left by a crash between the two renames
    try:
        with _write_errors(final):
            yield tmp
        with _output_errors(final):
            if final.exists():
                os.replace(final, old)
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def temp_prefix(final: Path) -> str:
    """Prefix of this process's temporaries for ``final`` (see the module docstring)."""
    return f".{_temp_stem(final)}.{_HOST}.{os.getpid()}-"


def _temp_stem(final: Path) -> str:
    """``final``'s name, or, when the temporaries' suffixes would pass :data:`NAME_MAX`, its start and a crc32."""
    name = final.name
    room = NAME_MAX - _TEMP_EXTRA - len(final.suffix.encode())  # atomic_dir also repeats the suffix
    encoded = name.encode()
    if len(encoded) <= room:
        return name
    return f"{encoded[:room - 9].decode(errors='ignore')}~{zlib.crc32(encoded):08x}"


def prepare_target(final: Path) -> None:
    """Create ``final``'s folder and remove the stale temporaries of earlier, killed writes."""
    final.parent.mkdir(parents=True, exist_ok=True)
    stem = _temp_stem(final)
    _sweep(final.parent, f".{glob.escape(stem)}.{_HOST}.*.tmp*",
           re.compile(rf"\.{re.escape(stem)}\.{_HOST}\.(\d+)-[^.]+\.tmp.*"))


def _sweep(folder: Path, glob_pattern: str, pattern: re.Pattern) -> None:
    """Remove the entries of ``folder`` whose name ``pattern`` matches with a pid (group 1) that is gone."""
    for tmp in folder.glob(glob_pattern):
        match = pattern.fullmatch(tmp.name)
        if match is None or _owner_alive(int(match.group(1)), tmp):
            continue
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


_SYSTEM_TEMP = tempfile.gettempdir()  # before process_temp_dir points tempfile at a folder of its own
_ACTIVE: Path | None = None  # this process's scratch folder, once made
_LAZY_PID: int | None = None


def temp_root() -> Path:
    """The folder every syncopt scratch folder lives under: ``<system temp>/syncopt-<uid>``, private."""
    root = Path(_SYSTEM_TEMP) / f"syncopt-{os.getuid()}"
    try:
        root.mkdir(mode=0o700, exist_ok=True)
        info = root.lstat()
    except OSError as exc:
        raise OutputFileError(f"cannot make the temporary folder {root}: {exc.strerror or exc}") from exc
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise OutputFileError(f"{root} is not a folder of this user (remove it, or set TMPDIR elsewhere)")
    return root


def _new_process_dir() -> Path:
    root = temp_root()
    _sweep(root, f"{_HOST}.*", re.compile(rf"{_HOST}\.(\d+)-[^.]+"))
    try:
        return Path(tempfile.mkdtemp(prefix=f"{_HOST}.{os.getpid()}-", dir=root))
    except OSError as exc:
        raise OutputFileError(f"cannot make a temporary folder in {root}: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def process_temp_dir() -> Iterator[Path]:
    """This process's scratch folder for the block: made under :func:`temp_root` (stale ones swept),
    the default folder of :mod:`tempfile` and ``$TMPDIR`` (child processes) while it lasts, so the
    back-ends' own temporary files (TensorFlow's autograph modules, torch inductor's) land in it
    too, and removed afterwards, whether the block ends, fails or is interrupted."""
    global _ACTIVE
    folder = _new_process_dir()
    saved = _ACTIVE, tempfile.tempdir, os.environ.get("TMPDIR")
    _ACTIVE, tempfile.tempdir, os.environ["TMPDIR"] = folder, str(folder), str(folder)
    try:
        yield folder
    finally:
        _ACTIVE, tempfile.tempdir = saved[0], saved[1]
        if saved[2] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved[2]
        shutil.rmtree(folder, ignore_errors=True)


def temp_dir(kind: str) -> tempfile.TemporaryDirectory:
    """A scratch folder ``<kind>-<random>`` in this process's folder (made on first use outside
    :func:`process_temp_dir`, removed at exit), removed when its ``with`` block ends."""
    global _ACTIVE, _LAZY_PID
    if _ACTIVE is None or (_LAZY_PID is not None and _LAZY_PID != os.getpid()):  # none yet, or a forked child
        _ACTIVE, _LAZY_PID = _new_process_dir(), os.getpid()
        atexit.register(shutil.rmtree, _ACTIVE, True)
    return tempfile.TemporaryDirectory(prefix=f"{kind}-", dir=_ACTIVE)


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


_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@contextlib.contextmanager
def _output_errors(final: Path) -> Iterator[None]:
    """Folder, temporary-file and rename problems as :class:`OutputFileError`."""
    try:
        yield
    except (FileExistsError, NotADirectoryError) as exc:  # mkdir met a file on the way
        raise OutputFileError(f"cannot write {final}: a file stands where a folder is needed") from exc
    except OSError as exc:
        raise OutputFileError(f"cannot write {final}: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def _write_errors(final: Path) -> Iterator[None]:
    """A writer's failed write (no room left) as :class:`OutputFileError`; other exceptions pass."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, OutputFileError) or (reason := _no_room(exc, final)) is None:
            raise
        raise OutputFileError(f"cannot write {final}: {reason}") from exc


def _no_room(exc: BaseException | None, final: Path) -> str | None:
    """Why a write failed for want of room, when ``exc`` (or what caused it) says so, else None.

    Back-ends word a full disk their own way: an ``OSError`` (ENOSPC, EDQUOT, EFBIG), safetensors'
    ``SafetensorError`` ("IoError(Os { code: 28, kind: StorageFull ... })"), torch.save's
    ``RuntimeError`` ("[enforce fail at inline_container.cc] ... PytorchStreamWriter failed writing
    file data/0: file write failed", or "... unexpected pos 75264 vs 75160" after "basic_ios::clear:
    iostream error"); the vaguer ones count only when the folder is nearly full.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
            return os.strerror(exc.errno)
        text = str(exc)
        if "No space left" in text or "StorageFull" in text or "os error 28" in text:
            return os.strerror(errno.ENOSPC)
        if "file write failed" in text or "PytorchStreamWriter failed" in text:
            return os.strerror(errno.ENOSPC) if _nearly_full(final.parent) else "the write failed"
        if ("inline_container.cc" in text or "iostream error" in text) and _nearly_full(final.parent):
            return os.strerror(errno.ENOSPC)  # torch's zip writer, past the first failed write
        exc = exc.__cause__ or exc.__context__
    return None


def _nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


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


def write_json(path: Path, data: dict) -> None:
    """``data`` as indented JSON at ``path``, written atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2))
