"""What the C library's allocator does with the memory torch frees, for training on CPU.

A training step frees and allocates the same activations, gradients and temporaries every step. glibc's malloc hands
large freed blocks back to the operating system (a block above the mmap threshold is mapped on its own and unmapped
when freed; free memory at the top of the heap above the trim threshold is released), so the next step faults the
same pages in again. Its thresholds adapt to the sizes it sees, but a working set as large as two ViT-Base encoders'
outruns them: late fusion at batch 8 page-faulted ~1.3 GB per step, ~18 % of its step time (benchmarks/README.md).

`set_malloc_policy` chooses one of:
- "retain": freed memory stays in the process and the next step reuses it, so no page faults once the first steps
  have run; the process keeps the resident size of its peak. The fastest for training.
- "release": every block of 1 MiB or more is mapped on its own and returned the moment it is freed, so the resident
  size follows the live tensors; what makes activation checkpointing's memory saving show on CPU. Slower.
- "default": glibc's own adaptive thresholds, left as the process found them.
"""

import ctypes
import logging
import platform


logger = logging.getLogger(__name__)

MALLOC_POLICIES = ("default", "retain", "release")

# mallopt options and glibc's default for the number of mapped blocks, from glibc's <malloc.h> / malloc.c.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_DEFAULT_MMAP_MAX = 65536
_INT_MAX = 2**31 - 1
RELEASE_THRESHOLD = 1 << 20  # bytes

_SETTINGS = {
    # No block is mapped on its own and the heap is never trimmed: everything freed is reused.
    "retain": ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _INT_MAX)),
    "release": (
        (_M_MMAP_MAX, _DEFAULT_MMAP_MAX),
        (_M_MMAP_THRESHOLD, RELEASE_THRESHOLD),
        (_M_TRIM_THRESHOLD, RELEASE_THRESHOLD),
    ),
}


def set_malloc_policy(policy: str) -> bool:
    """Sets this process's malloc `policy` ("default", "retain" or "release"; see the module's docstring), which
    processes it forks afterwards (data-loader workers) inherit. Returns whether the policy is in effect: False on a
    C library other than glibc, whose allocator is left alone."""
    if policy not in MALLOC_POLICIES:
        raise ValueError(f"`policy` must be one of {MALLOC_POLICIES}, got {policy!r}.")
    if policy == "default":
        return True
    if platform.libc_ver()[0] != "glibc":
        logger.warning("malloc policy %r not set: it needs glibc, this process runs on %s.", policy, platform.platform())
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    for option, value in _SETTINGS[policy]:
        if mallopt(option, value) != 1:
            raise RuntimeError(f"glibc's mallopt({option}, {value}) failed while setting the {policy!r} malloc policy.")
    return True
