"""calcml.watch under torch.distributed (two CPU processes, gloo, DistributedDataParallel): rank 0
observes the synchronised gradients (after DDP's all-reduce: the full batch's), prints and
reports; both ranks stop being watched at the same step."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist          # noqa: E402

if not dist.is_available():
    pytest.skip("this torch build has no torch.distributed", allow_module_level=True)

import calcml                               # noqa: E402
from calcml.debug import SessionConfig      # noqa: E402

SCRIPT = textwrap.dedent('''\
    import json, sys
    import numpy as np
    import torch, torch.distributed as dist
    import calcml
    from calcml.debug import SessionConfig
    rank, world, rendezvous, out = int(sys.argv[1]), 2, sys.argv[2], sys.argv[3]
    dist.init_process_group("gloo", init_method="file://" + rendezvous, rank=rank, world_size=world)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8, dtype=torch.float64), torch.nn.Tanh(),
                              torch.nn.Linear(8, 1, dtype=torch.float64))
    model = torch.nn.parallel.DistributedDataParallel(net)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    rng = np.random.default_rng(1)
    X = torch.from_numpy(rng.normal(size=(16, 3)))
    y = torch.sin(X[:, :1])
    mine = slice(rank * 8, rank * 8 + 8)          # each rank trains on half of the batch
    w = calcml.watch(model, optimizer, steps=3, report=out + "/report.json",
                     config=SessionConfig(detail_every=1, curvature_every=0))
    for step in range(6):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(X[mine]), y[mine])
        loss.backward()
        optimizer.step()
    with open(out + f"/rank{rank}.json", "w") as f:
        json.dump({"attached": w.attached, "observed": w.session.step_count,
                   "weight": net[0].weight.detach().numpy().tolist()}, f)
    dist.barrier()                 # both done before either tears the group down
    dist.destroy_process_group()
    ''')


def test_rank_0_sees_the_synchronised_gradients_and_both_ranks_keep_in_step(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    ranks = [subprocess.Popen([sys.executable, str(script), str(rank), str(tmp_path / "rendezvous"), str(tmp_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    outputs = [p.communicate(timeout=120) for p in ranks]
    assert [p.returncode for p in ranks] == [0, 0], outputs
    r0, r1 = (json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1))
    assert not r0["attached"] and not r1["attached"]          # both stopped watching after 3 steps
    assert r0["weight"] == r1["weight"]                       # DDP kept them in sync; no rank skipped a step
    assert "calcml:" in outputs[0][1] and "calcml:" not in outputs[1][1]   # rank 0 alone speaks
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["steps"] == 3
    # the gradient rank 0 saw at step 1 is the full batch's: one process, the same model and data
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8, dtype=torch.float64), torch.nn.Tanh(),
                              torch.nn.Linear(8, 1, dtype=torch.float64))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    X = torch.from_numpy(np.random.default_rng(1).normal(size=(16, 3)))
    seen = []
    w = calcml.watch(net, optimizer, steps=1, config=SessionConfig(detail_every=1, curvature_every=0),
                     on_step=seen.append)
    optimizer.zero_grad()
    torch.nn.functional.mse_loss(net(X), torch.sin(X[:, :1])).backward()
    optimizer.step()
    w.detach()
    full = seen[0].layers[0].params["weight"].grad_norm
    assert report["history"]["0.weight.grad_norm"][0] == pytest.approx(full, rel=1e-12)


PAUSED = textwrap.dedent('''\
    import datetime, json, sys, threading, time
    import torch, torch.distributed as dist
    import calcml
    import calcml.debug.watch as watching
    from calcml.debug import SessionConfig
    rank, rendezvous, out, heartbeat = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
    watching.HEARTBEAT = heartbeat
    dist.init_process_group("gloo", init_method="file://" + rendezvous, rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=2))
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3, 1, dtype=torch.float64))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    X = torch.randn(8, 3, dtype=torch.float64)
    w = calcml.watch(model, optimizer, steps=6, config=SessionConfig(curvature_every=0))
    for step in range(8):
        if rank == 0 and step == 2:          # a person pauses rank 0 for longer than the group's timeout
            w.session.pause()
            def resume():
                time.sleep(5)
                w.session.run()
            threading.Thread(target=resume).start()
        optimizer.zero_grad()
        model(X).pow(2).mean().backward()
        optimizer.step()
    with open(out + f"/rank{rank}.json", "w") as f:
        json.dump({"weight": model.module.weight.detach().numpy().tolist()}, f)
    dist.barrier()
    dist.destroy_process_group()
    ''')


def test_a_pause_longer_than_the_process_groups_timeout_holds_every_rank(tmp_path, heartbeat=0.5):
    """While rank 0 is paused the other ranks wait in a broadcast; rank 0 says "still paused"
    every HEARTBEAT seconds, so a pause of 5 s outlives a 2 s timeout and both ranks go on.
    (With a heartbeat longer than the pause, rank 1's broadcast times out and it fails.)"""
    script = tmp_path / "paused.py"
    script.write_text(PAUSED)
    ranks = [subprocess.Popen([sys.executable, str(script), str(rank), str(tmp_path / "rendezvous"), str(tmp_path),
                               str(heartbeat)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    outputs = [p.communicate(timeout=120) for p in ranks]
    assert [p.returncode for p in ranks] == [0, 0], outputs
    r0, r1 = (json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1))
    assert r0["weight"] == r1["weight"]
