"""Keep numba's compiled code on disk, so a fresh process does not recompile UMAP (~10 s).

pynndescent asks numba to cache its functions, but most of UMAP's are compiled without
`cache=True`, so every process (each run the daemon launches) compiles them again. Before UMAP
is imported, `use_persistent_cache` points numba's cache at a folder of ours and makes caching
the default for the functions compiled from then on. Numba keys each cached function by its
source file, signature and CPU, and recompiles whatever no longer matches, so a stale cache
costs a compile, never a wrong result.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

_enabled: Path | None = None


def use_persistent_cache(directory: Path) -> None:
    """Cache compiled numba code under `directory` for the rest of the process (idempotent)."""
    global _enabled
    if _enabled is not None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    if "umap" in sys.modules:
        log.info("UMAP was imported before the numba cache was set up: it will be recompiled")
    # The variable is read when numba's configuration loads; the attribute covers a numba
    # already imported by someone else.
    os.environ["NUMBA_CACHE_DIR"] = str(directory)
    import numba
    import numba.core.config

    numba.core.config.CACHE_DIR = str(directory)
    # A few functions cannot be cached (they hold pointers); numba then compiles them as before.
    warnings.filterwarnings("ignore", "Cannot cache compiled function", numba.NumbaWarning)
    numba.njit = _caching(numba.njit)
    numba.jit = _caching(numba.jit)
    _enabled = directory


def _caching(decorator):
    @functools.wraps(decorator)
    def with_cache(*args, **kwargs):
        kwargs.setdefault("cache", True)
        return decorator(*args, **kwargs)

    return with_cache
