"""Host memory: freed feature maps are reused without page faults, and handed back after a job."""
import json
import subprocess
import sys

import pytest

from zeroig_plugin.host_memory import _glibc

pytestmark = pytest.mark.skipif(_glibc() is None, reason="the malloc settings apply to glibc only")

# In a fresh process (the setting is process-wide): the resident memory (MB, over the start's) after
# a 256 MB block is freed and after release_freed_memory(), and the page faults of a second one.
PROBE = """
import json, os, resource, sys
import numpy as np
from zeroig_plugin.host_memory import release_freed_memory

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

def resident_mb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

if sys.argv[1] == "keep":
    from zeroig_plugin import ZeroIG
    ZeroIG(device="cpu")  # a CPU engine turns the setting on
start = resident_mb()
np.ones(2**28, np.uint8)  # allocated, touched, freed
freed = resident_mb() - start
before = faults()
np.ones(2**28, np.uint8)
second_faults = faults() - before
release_freed_memory()
print(json.dumps({"freed_mb": freed, "second_faults": second_faults, "released_mb": resident_mb() - start}))
"""


def _probe(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_cpu_engine_keeps_freed_blocks_for_reuse_until_released():
    default, kept = _probe("default"), _probe("keep")
    assert default["freed_mb"] < 50  # glibc unmaps a large block: the next one is faulted in anew
    assert kept["freed_mb"] > 200 and kept["second_faults"] < 100  # kept, and reused as it is
    assert kept["released_mb"] < 50
