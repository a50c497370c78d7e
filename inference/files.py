"""Writing result files safely: never over an existing file unasked, never half-written."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path


def write_atomically(path: str | os.PathLike, write: Callable[[Path], None], *, overwrite: bool) -> Path:
    """Call ``write(temporary_path)`` and rename the temporary file onto ``path``.

    The temporary file sits in the same folder, so the rename is atomic: ``path`` holds either
    its old content or the complete new one, and a failed write leaves nothing behind.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --force) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def check_free(paths: Sequence[Path], force: bool) -> None:
    """Raise FileExistsError naming every path of ``paths`` that exists, unless ``force``."""
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise FileExistsError(f"{', '.join(existing)} exist{'s' if len(existing) == 1 else ''}; "
                              "pass force=True (CLI: --force) to replace")
