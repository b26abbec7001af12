"""What viewers cost a served run, and what hostile clients do to it: the training step's time
while two viewers follow the run and another process attacks the socket, against the same
session's step time with nobody connected.

A session from a model file is served (calcml.debug.publish.Publisher, a Unix socket) and
driven as `--serve` drives it (tick, publish). Rounds alternate quiet (nobody connected) and
loud: a second process attaches two viewers that read everything, one that attaches and never
reads, and, in a loop, sends garbage, a line longer than any command, a wrong token, and keeps
30 connections open that never say who they are. The ratio printed is the median over rounds
of (per-step time loud / quiet) in the same round pair, with the min/median/max; the loud
process runs on the other core, so what is measured is what the run's own serving threads
cost it. Target: <= 1.10x (publishing is putting bytes on queues; the viewers' threads take
the GIL only to send and to read a line). "serving CPU" is the CPU time the process's other
threads (the viewers', the greeter's) used in the loud rounds, per CPU second of the training
thread: what serving costs in work, apart from the machine's second core being busy (which on
a small virtual machine slows the first by itself).

    python benchmarks/serve_load.py           # about 40 s
    python benchmarks/serve_load.py --quick   # a smoke run
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchutil as bu  # noqa: E402

TARGET = 1.10

HOSTILE = textwrap.dedent('''\
    import os, socket, sys, threading, time
    from calcml.debug import serve
    from calcml.tui.remote import connect
    from calcml.tui.backend import DebugState, read_frames
    address, mode = serve.parse_address(sys.argv[1]), sys.argv[2]
    token = serve.read_token(serve.token_path(address))
    followers = [connect(address, t) for t in (token, None)]   # two viewers, reading everything
    for sock, stream, first in followers:
        threading.Thread(target=read_frames, args=(stream, DebugState()), daemon=True).start()
    stuck = socket.socket(socket.AF_UNIX); stuck.connect(address.path)
    stuck.sendall(serve.attach_request(None))                  # attached, and never reads
    if mode == "viewers":
        print("ready", flush=True)
        time.sleep(3600)
    idle = []
    for _ in range(30):                                        # connections that never say who they are
        s = socket.socket(socket.AF_UNIX); s.connect(address.path); idle.append(s)
    print("ready", flush=True)
    bad = [b"\\x00\\xffgarbage\\n", b'{"attach": "calcml/1", "token": "' + b"A" * 70000 + b'"}\\n',
           b'{"attach": "calcml/1", "token": "wrong"}\\n', b"[" * 5000 + b"\\n"]
    while True:
        for line in bad:
            try:
                s = socket.socket(socket.AF_UNIX); s.connect(address.path); s.sendall(line); s.recv(4096); s.close()
            except OSError:
                pass
            time.sleep(0.002)
    ''')


def measure(model: str, mode: str, rounds: int, steps: int) -> dict:
    from calcml.debug import Session, load_model_file, serve
    from calcml.debug.config import session_config
    from calcml.debug.publish import Publisher

    folder = tempfile.mkdtemp(prefix="cmb", dir="/tmp")
    address = serve.Address("unix", path=os.path.join(folder, "bench.sock"))
    session = Session(load_model_file(str(ROOT / "sample_models" / model), steps=10**9), session_config(0))
    publisher = Publisher(session, address=address)
    publisher.start()
    worker = publisher.worker
    session.run()

    def per_step(n: int) -> tuple:
        """(seconds a step, CPU seconds the process's other threads used per CPU second of this one)."""
        start, process, own = time.perf_counter(), time.process_time(), time.thread_time()
        for _ in range(n):
            snapshot = worker.tick()
            if snapshot is not None:
                worker.publish(snapshot)
        own = time.thread_time() - own
        return (time.perf_counter() - start) / n, (time.process_time() - process - own) / own

    per_step(steps)   # warm up
    ratios, quiet_times, serving = [], [], []
    try:
        for _ in range(rounds):
            quiet, _ = per_step(steps)
            loud_process = subprocess.Popen([sys.executable, "-c", HOSTILE, address.path, mode], stdout=subprocess.PIPE,
                                            text=True, env=bu.thread_env(bu.ONE))
            assert loud_process.stdout.readline().strip() == "ready"
            loud, threads = per_step(steps)
            loud_process.kill()
            loud_process.wait()
            ratios.append(loud / quiet)
            serving.append(threads)
            quiet_times.append(quiet)
    finally:
        refused = publisher.server.refused
        publisher.close()
        shutil.rmtree(folder, ignore_errors=True)
    return {"ratios": ratios, "quiet_ms": 1e3 * statistics.median(quiet_times), "refused": refused,
            "serving": statistics.median(serving)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    bu.reexec_one_thread()
    rounds, steps = (2, 200) if args.quick else (7, 1500)
    print(f"load average {bu.load_average()}; one BLAS thread; {rounds} rounds of {steps} steps each way")
    print(f"{'model':<16} {'loud:':<8} {'quiet step':>11} {'loud/quiet':>11} {'min/med/max':>20} {'serving CPU':>12} "
          f"{'turned away':>12}  verdict")
    for model, mode in (("xor_mlp.py", "viewers"), ("xor_mlp.py", "attack"),
                        ("spirals_adam.py", "viewers"), ("spirals_adam.py", "attack")):
        result = measure(model, mode, rounds, steps)
        ratios = result["ratios"]
        median = statistics.median(ratios)
        spread = bu.fmt_spread(ratios, '.3f')
        verdict = "PASS" if median <= TARGET else "MISS"
        print(f"{model:<16} {mode:<8} {result['quiet_ms']:>9.3f}ms {median:>10.3f}x {spread:>20} "
              f"{100 * result['serving']:>11.1f}% {result['refused']:>12}  "
              f"{verdict} (<= {TARGET:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
