"""Output paths checked before the work that fills them, and written atomically.

Every command that writes a result (an integer model, a library, a checkpoint) checks its
output path first, so that a read-only folder or a parent that is a file is a one-line error
before minutes of calibration or compilation, not a traceback after them; and writes beside
the target under a temporary name, moved into place when complete, so that a failure never
leaves a truncated file where a good one is expected.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def check_writable(path: str | Path, what: str = "output") -> Path:
    """``path`` if a file can be written there (its folders made); ValueError naming why not:
    the path is a folder, an ancestor is a file, or the folder refuses a file."""
    path = Path(path)
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
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".probe")
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
def atomic_output(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path``, unique to this call (two writers of one file, in two
    processes or two threads, never share one); moved onto ``path`` when the block succeeds,
    removed when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would make every result private
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
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
