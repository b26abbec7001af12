"""A run published beyond its own process: to viewers on a socket (serve.py), to a recording
file (recording.py), or both. The frames are the interface's (a Worker over the session
writes them), encoded once and handed to each; neither can make the training wait."""
from __future__ import annotations

import sys

from .serve import Address, Server
from .session import Session
from .worker import Worker, _Channel


class Publisher:
    """`Publisher(session, address=..., record=...)`, then `start()` (ServeError if the address
    cannot be served), the run driven through `worker` (tick/publish, or observed), `close()`.
    `rebuild(seed)`: a new session over the model file, for a viewer's restart (None: none)."""

    def __init__(self, session: Session, *, address: Address | None = None, record: str | None = None,
                 private: bool = False, public: bool = False, rank: int = 0, world: int = 1,
                 control: bool = True, rebuild=None):
        """`control`: a viewer with the token may control the run (False: every viewer only
        watches, as on a torch.distributed rank other than 0, which follows rank 0)."""
        taps = []
        self.recorder = None
        if record is not None:
            from .recording import Recorder
            self.recorder = Recorder(record)
            taps.append(self.recorder.write)
        self.channel = _Channel(None, taps=taps)
        self.worker = Worker(session, self.channel)
        self.worker.rebuild = rebuild
        self.worker.recorder = self.recorder
        self.server = None
        if address is not None:
            self.server = Server(address, catch_up=self.worker.catch_up, on_command=self.worker.handle,
                                 private=private, public=public, rank=rank, world=world)
            self.server.control = control
            taps.append(self.server.publish)
            self.channel.taps = taps
        self._closed = False

    @property
    def session(self) -> Session:
        return self.worker.session      # (a new one after a restart)

    def start(self) -> None:
        if self.server is not None:
            self.server.start()
        worker = self.worker
        self.channel.send(worker.hello())
        worker._sent = worker.session.initial_snapshot()
        self.channel.send({"type": "snapshot", "snapshot": worker._sent})
        worker.send_breakpoints()

    def attach_line(self) -> str:
        """How to follow this run, for the person who started it."""
        lines = []
        if self.server is not None:
            lines.append(f"serving at {self.server.address}: follow it with  calcml-debug --attach "
                         f"{self.server.address}\n  (its token, which gives control, is in {self.server.token_file})")
        if self.recorder is not None:
            lines.append(f"recording to {self.recorder.path}: open it later with  calcml-debug --open {self.recorder.path}")
        return "\n".join(lines)

    def close(self) -> None:
        """The run is over: what it last measured, then bye, to every viewer and the recording."""
        if self._closed:
            return
        self._closed = True
        try:
            self.worker.publish(None, force=True)
            self.channel.send({"type": "bye"})
        finally:
            if self.server is not None:
                self.server.close()
            if self.recorder is not None:
                self.recorder.close()
                if self.recorder.error:
                    print(f"calcml: the recording {self.recorder.path} stopped early: {self.recorder.error}",
                          file=sys.stderr)

