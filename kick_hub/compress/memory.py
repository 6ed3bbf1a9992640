"""Memory of the compressing process: its peak resident set size, and glibc allocator calls that hand freed memory
back to the OS.

Compression holds one model copy and streams temporaries through it (per-block statistics, per-tensor casts). glibc
keeps freed chunks below its mmap threshold in the heap and raises that threshold after each large free, so without
these calls the temporaries pile up in RSS. Each call is a no-op off Linux / glibc.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import mmap
import resource
from collections.abc import Iterator
from pathlib import Path

import torch


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Linux's ``VmHWM`` counts from this process's own start; ``ru_maxrss`` (the fallback elsewhere) survives
    ``execve``, so a child process would report its parent's peak if that were higher.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def release_freed_memory(collect: bool = True) -> None:
    """Hand memory Python and torch have freed back to the OS (``malloc_trim(0)``). glibc keeps freed chunks below
    its (self-raising) mmap threshold in the heap, so without this the per-block temporaries of a calibration loop
    pile up in RSS. ``collect`` runs the garbage collector first (slow with a large heap: once, not per layer)."""
    if collect:
        gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


@contextlib.contextmanager
def collections_skip_what_lives_now() -> Iterator[None]:
    """While in the block, the garbage collector leaves out every object alive at its start (``gc.collect`` then
    ``gc.freeze``; ``gc.unfreeze`` at the end, so nothing is kept past it). A process that has imported torch,
    transformers and the quantizers tracks about 600,000 objects, and every full collection scans them all: 0.3 s
    for each ``release_freed_memory``, once per compressed variant, and for each collection Python starts itself. A
    sweep runs its cells in this block, so collections scan what the cells create; an object alive at the start
    that becomes cyclic garbage inside the block is freed after it."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def unmap_large_frees(threshold: int = 1 << 20) -> None:
    """Serve allocations >= ``threshold`` bytes with their own mmap, so freeing one returns it to the OS at once.
    glibc raises its mmap threshold after each large free (up to 32 MiB), after which a quantizer's per-tensor
    temporaries stay in the heap until the end of the load (+0.55x the model bytes for int8 on SmolLM2). Fixing the
    threshold (``mallopt(M_MMAP_THRESHOLD)``) is process-wide and lasts for the process; no-op off glibc."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, threshold)  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def drop_pages(tensor: torch.Tensor) -> None:
    """Tell the kernel the pages wholly inside ``tensor``'s storage are no longer needed (``madvise(DONTNEED)``):
    file-backed pages leave RSS at once (a later read would fetch them again), anonymous ones read back as zeros.
    Only for a storage nobody reads again; no-op off Linux / glibc."""
    storage = tensor.untyped_storage()
    start, size, page = storage.data_ptr(), storage.nbytes(), mmap.PAGESIZE
    lo, hi = -(-start // page) * page, (start + size) // page * page
    if hi <= lo:
        return
    try:
        ctypes.CDLL("libc.so.6").madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), 4)  # 4: MADV_DONTNEED
    except (OSError, AttributeError):
        pass
