"""Recordings made by driving a real session in-process, as a worker with a recording tap does."""
from __future__ import annotations

from pathlib import Path

from calcml.debug import Session, load_model_file
from calcml.debug.recording import Recorder
from calcml.debug.worker import Worker, _Channel

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def record(path, name: str = "xor_mlp.py", steps: int = 60, sent: list | None = None, **recorder) -> Recorder:
    """Train the sample `name` for `steps` steps, every step published, into a recording at
    `path`; every frame sent is appended to `sent` (as the channel's tap sees it)."""
    recorder = Recorder(str(path), **recorder)
    taps = [recorder.write] if sent is None else [recorder.write, lambda message, data: sent.append((message, data))]
    session = Session(load_model_file(str(SAMPLES / name), steps=steps))
    worker = Worker(session, _Channel(None, taps=taps))
    channel = worker.channel
    channel.send(worker.hello())
    worker._sent = session.initial_snapshot()
    channel.send({"type": "snapshot", "snapshot": worker._sent})
    worker.send_breakpoints()
    session.run()
    for _ in range(steps + 10):
        snapshot = worker.tick()
        if snapshot is None:
            break
        worker.publish(snapshot, force=True)
    worker.publish(None, force=True)
    channel.send({"type": "bye"})
    recorder.close()
    return recorder
