"""Output paths checked before the work that fills them, and written atomically.

Every command that writes a result (an integer model, a library, a checkpoint) checks its
output path first, so that a read-only folder or a parent that is a file is a one-line error
before minutes of calibration or compilation, not a traceback after them; and writes beside
the target under a temporary name, moved into place when complete, so that a failure never
leaves a truncated file where a good one is expected.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def cache_dir() -> Path:
    """The project's cache folder, made if missing: ``$INTVIT_CACHE``, else
    ``~/.cache/intvit`` (zoo checkpoints, the emulated device, service logs, ...)."""
    root = os.environ.get("INTVIT_CACHE") or Path.home() / ".cache" / "intvit"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


#: The longest file name most Linux file systems take, in bytes.
NAME_MAX = 255


def check_names(path: str | Path, what: str = "output") -> Path:
    """``path``, or ValueError naming its first component longer than :data:`NAME_MAX`
    bytes (the OS's "File name too long", said before any work)."""
    path = Path(path)
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            raise ValueError(
                f"cannot use the {what} {str(path)!r}: the name {part[:40]!r}... is {size} "
                f"bytes; file systems take at most {NAME_MAX}"
            )
    return path


def _temp_prefix(path: Path) -> str:
    """A hidden temporary name's prefix that keeps a legal name legal: ``.``, at most the
    first 200 bytes' worth of the name, ``.``; mkstemp adds 8 characters and the suffix."""
    name = path.name
    while len(os.fsencode(name)) > 200:
        name = name[:-1]
    return f".{name}."


def check_writable(path: str | Path, what: str = "output") -> Path:
    """``path`` if a file can be written there (its folders made); ValueError naming why not:
    a name too long, the path is a folder, an ancestor is a file, or the folder refuses a
    file."""
    path = check_names(path, what)
    if path.is_dir():
        raise ValueError(f"cannot write the {what} {str(path)!r}: it is a folder")
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise ValueError(
                    f"cannot write the {what} {str(path)!r}: {str(ancestor)!r} is a file"
                )
            break
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        reason = err.strerror or str(err)
        raise ValueError(f"cannot write the {what} {str(path)!r}: {reason}") from None
    return path


def check_folder_writable(path: str | Path, what: str = "output folder") -> Path:
    """``path`` if it is (or can be made) a folder that takes new files; ValueError naming
    why not: a name too long, the path or an ancestor is a file, or it refuses a file."""
    path = check_names(path, what)
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise ValueError(
                    f"cannot write the {what} {str(path)!r}: {str(candidate)!r} is a file"
                )
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".intvit-", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        reason = err.strerror or str(err)
        raise ValueError(f"cannot write the {what} {str(path)!r}: {reason}") from None
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str | Path, executable: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path``, unique to this call (two writers of one file, in two
    processes or two threads, never share one), ending in ``path``'s suffix (tools that pick a
    format by it, such as a linker, see the right one); moved onto ``path`` when the block
    succeeds, with the usual mode (0666, or 0777 when ``executable``, less the umask), and
    removed when it fails. A full disk or an interrupted write never leaves a partial file
    under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp" + path.suffix
    )
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        # the usual mode, set after the block: writers that recreate the file (safetensors)
        # would otherwise leave mkstemp's 0600
        os.chmod(tmp, (0o777 if executable else 0o666) & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through :func:`atomic_output`."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def torch_save_atomic(body: object, path: str | Path) -> Path:
    """``torch.save`` ``body`` to ``path`` through :func:`atomic_output`."""
    import torch

    with atomic_output(path) as tmp:
        torch.save(body, tmp)
    return Path(path)


@contextlib.contextmanager
def exclusive(path: str | Path, what: str) -> Iterator[Path]:
    """Hold ``path`` (a folder, or a file's name) for this process while the block runs:
    another process that asks for it meanwhile gets a ValueError naming the holder's PID.
    The lock is ``flock`` on a hidden file beside it, released when the process ends, even
    killed."""
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path.mkdir(parents=True, exist_ok=True)
        lock = path / ".intvit.lock"
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = path.parent / f".{path.name}.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise ValueError(
                f"the {what} {str(path)!r} is in use by process {holder}; wait for it or "
                "choose another"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing releases the lock
