"""`calcml-debug --attach ADDRESS`: the interface on a run served elsewhere (calcml.debug.serve).

The frames are those a local training process sends, so every screen works as it does there;
commands go back over the same connection (obeyed only with the run's token). Quitting
detaches: the run goes on, and can be attached to again.
"""
from __future__ import annotations

import socket
import threading

from calcml.debug import serve, wire

from .backend import Backend, decode, read_frames

CONNECT_TIMEOUT = 5.0


class AttachError(Exception):
    """Attaching failed; the message says why and what to do."""


def find_token(address: serve.Address, token_file: str | None) -> str | None:
    """The run's token: from `token_file`, else from where the run wrote it, if this user can
    read it there (None: attach view-only)."""
    path = token_file or serve.token_path(address)
    try:
        return serve.read_token(path) or None
    except OSError as error:
        if token_file:
            raise AttachError(f"cannot read the token file {token_file}: {error.strerror or error}") from None
        return None


def connect(address: serve.Address, token: str | None, timeout: float = CONNECT_TIMEOUT):
    """A connection attached to the served run: (socket, its line reader, the `attached`
    frame), or AttachError saying why not (nothing there, turned away, not a calcml run)."""
    if address.kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target = address.path
    else:
        sock = socket.socket(socket.AF_INET6 if ":" in address.host else socket.AF_INET, socket.SOCK_STREAM)
        target = (address.host, address.port)
    sock.settimeout(timeout)
    try:
        sock.connect(target)
    except OSError as error:
        sock.close()
        if isinstance(error, (FileNotFoundError, ConnectionRefusedError)):
            raise AttachError(f"no run is serving at {address} ({error.strerror}). Start one with "
                              "calcml-debug MODEL.py --serve") from None
        raise AttachError(f"cannot attach to {address}: {error.strerror or error}") from None
    try:
        try:
            sock.sendall(serve.attach_request(token))
        except (BrokenPipeError, ConnectionResetError):
            pass     # turned away before it asked: the reason may be waiting to be read
        stream = sock.makefile("rb")
        line = stream.readline(wire.MAX_FRAME_BYTES + 1)
    except OSError as error:
        sock.close()
        raise AttachError(f"{address} did not answer as a calcml run does ({error.strerror or error})") from None
    if not line:
        sock.close()
        raise AttachError(f"{address} closed the connection without an answer (is it a calcml run?)")
    try:
        first = decode(line)
    except wire.FrameError:
        sock.close()
        raise AttachError(f"{address} is not a calcml run (its answer was not a calcml frame)") from None
    kind = type(first).__struct_config__.tag
    if kind == "refused":
        sock.close()
        raise AttachError(first.message)
    if kind != "attached":
        sock.close()
        raise AttachError(f"{address} is not a calcml run (it answered with a {kind!r} frame)")
    sock.settimeout(None)
    return sock, stream, first


class AttachBackend(Backend):
    """A served run, through a connection made by `connect`. `close()` (and quit) detach."""

    detaches = True      # the app's q says so

    def __init__(self, address: serve.Address, sock, stream, attached):
        super().__init__()
        self.address = address
        self._sock, self._stream = sock, stream
        self._write_lock = threading.Lock()
        self._closed = False
        self.state.apply(attached)

    def start(self) -> None:
        threading.Thread(target=self._read, daemon=True, name="calcml-attach").start()

    def _read(self) -> None:
        read_frames(self._stream, self.state)
        self.state.disconnected("detached" if self._closed else f"the connection to {self.address} closed")

    def send(self, command: dict) -> None:
        data = wire.encode(command) + b"\n"
        with self._write_lock:
            if self._closed:
                return
            try:
                self._sock.sendall(data)
            except OSError:
                pass

    def request_quit(self) -> None:
        """Detach: the served run goes on."""
        self.close()

    def close(self) -> None:
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
        for step in (lambda: self._sock.shutdown(socket.SHUT_RDWR), self._sock.close):
            try:
                step()
            except OSError:
                pass


def attach(text: str, token_file: str | None = None, rank: int | None = None):
    """The backend for `--attach TEXT [--token-file F] [--rank R]` (AttachError or
    serve.ServeError on failure)."""
    address = serve.parse_address(text)
    if rank:
        address = serve.for_rank(address, rank)
    token = find_token(address, token_file)
    sock, stream, attached = connect(address, token)
    return AttachBackend(address, sock, stream, attached)


def describe(backend: AttachBackend) -> str:
    remote = backend.state.remote or {}
    how = "in control" if remote.get("control") else "watching only"
    where = f", rank {remote.get('rank', 0)} of {remote.get('world')}" if (remote.get("world") or 1) > 1 else ""
    return f"attached to {backend.address} ({how}{where})"

