"""The one way the package writes a file: atomically and durably, with a full disk told in one line.

:func:`atomic_write` writes a temporary file in the target's directory, fsyncs it, moves it onto the target with
os.replace and fsyncs the directory, so a crash, a kill or a power cut leaves the old file or the new one, never
half a file. Temporary files of writers that were killed are removed by the next write of the same file. A full
disk raises OSError(ENOSPC) naming the file, whatever the writer raised. Standard library only: shc-eval (numpy
only) writes through it too.
"""
from __future__ import annotations

import errno
import glob
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then move the file onto ``path`` in one step, durably (file and directory
    fsync'd). Temporary files of writers killed before they finished are removed first. A full disk raises
    OSError(ENOSPC) naming ``path``, whatever the writer raised (torch.save's RuntimeError included)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{_temporary_prefix(path)}{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; the artifact is a file like any other
        write(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
        _fsync_directory(path.parent)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, Exception) and disk_full(exc, path.parent):
            raise disk_full_error(path) from None
        raise


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_stale_temporaries(path: str | os.PathLike) -> None:
    """Remove ``path``'s temporary files (``.NAME.PID.XXXX.tmp``) whose writer is no longer running."""
    path = Path(path)
    prefix = _temporary_prefix(path)
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = tmp.name[len(prefix):].split(".", 1)[0]
        if not pid.isdigit() or not _process_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def fsync_path(path: str | os.PathLike) -> None:
    """fsync a file or a directory (the rename of a file into it is durable only then)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory) -> None:
    try:
        fsync_path(directory)
    except OSError as exc:  # some file systems cannot fsync a directory (EINVAL): the rename stands anyway
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.EACCES, errno.EPERM):
            raise


def disk_full(exc: BaseException, directory) -> bool:
    """Whether ``exc`` (raised while writing into ``directory``) means the disk is full: ENOSPC / EDQUOT, or a
    writer's own error (torch.save's "file write failed") while no space is left."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if "No space left on device" in str(exc):
        return True
    if not isinstance(exc, RuntimeError):  # an OSError with another errno is another failure (EACCES, ...)
        return False
    try:
        return shutil.disk_usage(directory).free < (1 << 20)
    except OSError:
        return False


def disk_full_error(path, needed: int | None = None, reserve: int = 0) -> OSError:
    """The one message of a full disk: the file that could not be written, and what to do."""
    directory = Path(path).parent
    try:
        free = f"{human_size(shutil.disk_usage(directory).free)} free"
    except OSError:
        free = "no space"
    need = f" (it needs {human_size(needed)}" if needed else ""
    need += f", plus {human_size(reserve)} kept free for everything else)" if reserve else (")" if needed else "")
    error = OSError(f"cannot write {path}{need}: the disk is full ({free} in {directory}); free some space and "
                    f"rerun")
    error.errno = errno.ENOSPC  # str() stays the message alone (OSError(errno, msg) would prefix "[Errno 28]")
    return error


def current_umask() -> int:
    """The process's umask (reading it means setting it: put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path, text: str) -> None:
    """``text`` (UTF-8) to ``path`` through :func:`atomic_write`."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_npy(path, array) -> None:
    """A numpy array as .npy to ``path`` through :func:`atomic_write`."""
    import numpy as np
    _write_numpy(path, np.save, array)


def write_npz(path, arrays: dict) -> None:
    """Named numpy arrays as .npz to ``path`` through :func:`atomic_write`."""
    import numpy as np
    _write_numpy(path, np.savez, **arrays)


def _write_numpy(path, save, *args, **kwargs) -> None:
    def write(tmp):
        with open(tmp, "wb") as f:  # a file object: given a name, numpy would add ".npy" / ".npz" to it
            save(f, *args, **kwargs)
    atomic_write(path, write)


def write_json_file(path, obj, default=None) -> None:
    """``obj`` as indented JSON plus a newline to ``path`` through :func:`atomic_write`."""
    write_text(path, json.dumps(obj, indent=2, default=default) + "\n")


def check_free_space(directory, needed: int, path, reserve: int = 0) -> None:
    """OSError(ENOSPC) naming ``path`` unless ``directory`` has ``needed`` bytes free plus ``reserve`` kept for
    everything else (stated in the message)."""
    free = shutil.disk_usage(directory).free
    if needed + reserve > free:
        raise disk_full_error(path, needed, reserve)


def human_size(nbytes: int) -> str:
    """Bytes for messages: TB, GB, MB or kB, whichever reads best."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if nbytes >= 0.1 * scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes / 1e3:.1f} kB"
