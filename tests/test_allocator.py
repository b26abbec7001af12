"""The allocator setting: applied once on glibc, and it does what it is for (no page faults
from a session step's arrays being freed and taken again)."""
import resource
import subprocess
import sys
import textwrap

import pytest

from calcml.debug.allocator import keep_freed_memory

SCRIPT = textwrap.dedent("""
    import resource, sys
    from calcml.debug.allocator import keep_freed_memory
    if sys.argv[1] == "tuned first":   # before numpy has allocated and freed anything large
        assert keep_freed_memory()
    import numpy as np
    import calcml as cm, calcml.nn.functional as F
    from calcml.debug import ModelSpec, Session
    from calcml.debug.allocator import keep_freed_memory
    if sys.argv[1] == "tuned":
        assert keep_freed_memory()
    cm.manual_seed(0)
    model = cm.nn.Sequential(cm.nn.Linear(784, 256), cm.nn.ReLU(), cm.nn.Linear(256, 10))
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 784)), rng.integers(0, 10, 64)
    spec = ModelSpec(path="<t>", name="t", description="", model=model, loss=F.cross_entropy, data=(X, y),
                     optimizer=cm.optim.SGD(model.parameters(), lr=0.01), regularizer=None, batch_size=None,
                     val_data=None, seed=0, steps=None)
    s = Session(spec)
    s.step(20); [s.tick() for _ in range(20)]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    s.step(200); [s.tick() for _ in range(200)]
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True,
                         env={"OPENBLAS_NUM_THREADS": "1", "PATH": ""})
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="M_TOP_PAD is glibc's")
def test_keeping_freed_memory_stops_the_page_faults_of_each_step():
    assert keep_freed_memory() is True and keep_freed_memory() is True   # idempotent
    assert faults("tuned") < 200         # under one per step (200 steps); untuned, hundreds per step
    # however early it is called (glibc's mmap threshold has not yet risen from 128 KiB then)
    assert faults("tuned first") < 200
