"""Serve a run to viewers elsewhere: its frames out on a local socket, their commands back in.

A served run (`calcml-debug model.py --serve`, `calcml.watch(..., serve=True)`) listens on a
Unix socket (default) or a loopback TCP port; `calcml-debug --attach ADDRESS` is a viewer. The
frames are the ones the interface gets from its own training process (wire.py: JSON lines,
data only), so a viewer shows the same screens.

A viewer's first line says who it is: {"attach": "calcml/1", "token": "..."}. With the run's
token (generated per run, in a file only its user can read) its commands are obeyed; without
one it only watches, or is turned away if the run was served `private`; a wrong token is
turned away. Then it is sent an `attached` frame and the run so far (Worker.catch_up), and
from then on every frame the run publishes.

Nothing a viewer sends can slow or stop the training: each viewer has its own threads, a
bounded queue (a viewer that falls behind loses what is queued and is sent the run afresh: the
latest is what counts), a time limit to say who it is, and every line it sends is checked by
the wire's schemas before use; a bad line closes that viewer's connection only. Publishing is
putting bytes on queues: it never waits for a socket.
"""
from __future__ import annotations

import errno
import hmac
import ipaddress
import os
import secrets
import selectors
import socket
import stat
import tempfile
import threading
import time
from collections import deque
from typing import NamedTuple

import msgspec

from . import wire

PROTOCOL = "calcml/1"
ATTACH_TIMEOUT = 5.0        # seconds a new connection has to say who it is
MAX_VIEWERS = 8             # attached at once; more are turned away
MAX_CONNECTING = 16         # connections still saying who they are; more are closed at once
QUEUE_BYTES = 64 * 1024 * 1024   # queued for one viewer before it is counted as fallen behind
SEND_TIMEOUT = 30.0         # a viewer that takes no bytes for this long is dropped
CLOSE_GRACE = 1.0           # seconds the end of a run waits for viewers to be sent what is queued
CATCH_UP_EVERY = 0.5        # seconds at least between two catch-ups (what a late viewer is sent)


class ServeError(ValueError):
    """An address that cannot be served or attached to; the message says what to do."""


class Address(NamedTuple):
    kind: str            # "unix" or "tcp"
    path: str = ""       # unix
    host: str = ""       # tcp
    port: int = 0

    def __str__(self) -> str:
        if self.kind == "unix":
            return self.path
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_address(text: str) -> Address:
    """'unix:PATH' or a path (anything with a '/' or ending in .sock): a Unix socket;
    'HOST:PORT', 'tcp:HOST:PORT' or 'PORT': TCP (host 127.0.0.1 when left out)."""
    text = text.strip()
    if not text:
        raise ServeError("an empty address: give a socket path (e.g. /tmp/run.sock) or HOST:PORT")
    if text.startswith("unix:"):
        return Address("unix", path=os.path.abspath(os.path.expanduser(text[5:])))
    if text.startswith("tcp:"):
        text = text[4:]
    elif "/" in text or text.endswith(".sock") or text.startswith("~"):
        return Address("unix", path=os.path.abspath(os.path.expanduser(text)))
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise ServeError(f"address {text!r}: expected a socket path or HOST:PORT (a port is a number)") from None
    if not 0 < number < 65536:
        raise ServeError(f"address {text!r}: a port is between 1 and 65535")
    return Address("tcp", host=host, port=number)


def is_loopback(address: Address) -> bool:
    if address.kind == "unix":
        return True
    if address.host == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.host).is_loopback
    except ValueError:
        return False


def runtime_dir() -> str:
    """A folder only this user can enter, for sockets and token files: $XDG_RUNTIME_DIR/calcml,
    else calcml-UID in the temporary folder. Refused if someone else owns it or can enter it."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    path = os.path.join(base, "calcml") if base and os.path.isdir(base) else \
        os.path.join(tempfile.gettempdir(), f"calcml-{os.getuid()}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ServeError(f"{path} is not a private folder of this user (it must be a directory, owned by you, "
                         "mode 0700): remove it, or give an address with --serve-address")
    return path


def default_address(name: str, tag: str | None = None) -> Address:
    """A socket named after the model file and `tag` (default: this process's id), in
    runtime_dir(). Under torchrun the tag is the run's id, the same on every rank, so that
    each rank's address follows from rank 0's (for_rank)."""
    if tag is None:
        tag = os.environ.get("TORCHELASTIC_RUN_ID") if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 else None
    stem = os.path.splitext(os.path.basename(name))[0] or "run"
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{stem}-{tag or os.getpid()}")[:60]
    return Address("unix", path=os.path.join(runtime_dir(), f"{stem}.sock"))


def for_rank(address: Address, rank: int) -> Address:
    """Rank r's address under torch.distributed: the base for rank 0; `NAME.rank<r>.sock`
    beside a socket; port + r for TCP."""
    if rank == 0:
        return address
    if address.kind == "unix":
        root, ext = os.path.splitext(address.path)
        return address._replace(path=f"{root}.rank{rank}{ext or '.sock'}")
    return address._replace(port=address.port + rank)


def token_path(address: Address) -> str:
    """Where a run's token is kept: beside its socket, or in runtime_dir() for a TCP port."""
    if address.kind == "unix":
        return address.path + ".token"
    host = "".join(c if c.isalnum() or c in ".-" else "_" for c in address.host)
    return os.path.join(runtime_dir(), f"{host}-{address.port}.token")


def write_token(path: str) -> str:
    """A new token, written to `path` readable by this user only (mode 0600, replacing a file
    there only if it is this user's)."""
    token = secrets.token_urlsafe(32)
    try:
        if os.path.lexists(path):
            if os.lstat(path).st_uid != os.getuid():
                raise ServeError(f"{path} belongs to another user: choose another address")
            os.unlink(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
    except OSError as error:
        raise ServeError(f"cannot write the token file {path}: {error.strerror or error}") from None
    return token


def read_token(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


# -- the first line a viewer sends -------------------------------------------------------------

class AttachRequest(msgspec.Struct, forbid_unknown_fields=False):
    attach: str
    token: str | None = None


_ATTACH = msgspec.json.Decoder(AttachRequest)


def decode_attach(line: bytes) -> AttachRequest:
    if len(line) > wire.MAX_COMMAND_BYTES:
        raise wire.FrameError("attach request too large")
    try:
        request = _ATTACH.decode(line)
    except (msgspec.MsgspecError, RecursionError, MemoryError) as error:
        raise wire.FrameError(f"not an attach request ({str(error)[:120]})") from None
    if request.attach != PROTOCOL:
        raise wire.FrameError(f"unknown protocol {request.attach[:40]!r} (this run speaks {PROTOCOL})")
    return request


def attach_request(token: str | None) -> bytes:
    return msgspec.json.encode(AttachRequest(PROTOCOL, token)) + b"\n"


# -- the server --------------------------------------------------------------------------------

_BUSY = wire.encode({"type": "refused", "cmd": "attach", "message": (
    f"not attached: {MAX_CONNECTING} connections are waiting to attach already; try again in a few seconds")}) + b"\n"


class Server:
    """Listens at `address`; `publish(message, data)` (a channel tap) sends a frame to every
    viewer. `catch_up(then)` gives the frames a new viewer needs (Worker.catch_up); `on_command`
    takes a controlling viewer's valid command (Worker.handle)."""

    def __init__(self, address: Address, *, catch_up, on_command, private: bool = False,
                 public: bool = False, rank: int = 0, world: int = 1):
        if not public and not is_loopback(address):
            raise ServeError(f"{address} is reachable from other machines: calcml serves only on this one "
                             "(a Unix socket or 127.0.0.1) unless asked with --serve-public. To follow a "
                             "remote run, tunnel a local address over SSH instead (README: Following a run "
                             "from elsewhere)")
        self.address, self.catch_up, self.on_command = address, catch_up, on_command
        self.private, self.rank, self.world = private, rank, world
        self.control = True         # False: even the token only watches (a rank that follows rank 0)
        self.token: str | None = None
        self.token_file = token_path(address)
        self._lock = threading.Lock()
        self._viewers: list[_Viewer] = []
        self._connecting = 0
        self._closed = threading.Event()
        self._sock: socket.socket | None = None
        self._catching_up = threading.Lock()
        self._last_catch_up = -CATCH_UP_EVERY
        self.refused = 0            # connections turned away (for tests and the note)

    # lifecycle
    def start(self) -> None:
        a = self.address
        if a.kind == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            _remove_stale_socket(a.path)
            old = os.umask(0o177)             # the socket itself: this user only
            try:
                sock.bind(a.path)
            except OSError as error:
                sock.close()
                raise ServeError(f"cannot serve at {a.path}: {error.strerror or error}") from None
            finally:
                os.umask(old)
        else:
            family = socket.AF_INET6 if ":" in a.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((a.host, a.port))
            except OSError as error:
                sock.close()
                hint = " (another run is serving there: choose another port)" if error.errno == errno.EADDRINUSE else ""
                raise ServeError(f"cannot serve at {a}: {error.strerror or error}{hint}") from None
        sock.listen(32)
        self._sock = sock
        try:
            self.token = write_token(self.token_file)
        except ServeError:
            self.close()
            raise
        threading.Thread(target=self._accept, daemon=True, name="calcml-serve").start()

    def close(self) -> None:
        """Stop serving: no new viewers; each attached one gets what is queued (a bye, usually)
        for a moment, then its connection closes. The socket and token files are removed."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
        with self._lock:
            viewers, self._viewers = self._viewers, []
        for viewer in viewers:
            viewer.finish()
        end = time.monotonic() + CLOSE_GRACE   # a moment to send the end (the bye): a process
        for viewer in viewers:                 # exiting next would cut the threads short
            viewer.join(max(0.0, end - time.monotonic()))
        for path in ((self.address.path,) if self.address.kind == "unix" else ()) + (self.token_file,):
            try:
                os.unlink(path)
            except OSError:
                pass

    @property
    def connecting(self) -> int:
        """Connections that have not said who they are yet."""
        with self._lock:
            return self._connecting

    @property
    def viewers(self) -> int:
        with self._lock:
            return len(self._viewers)

    # the channel's tap
    def publish(self, message, data: bytes) -> None:
        with self._lock:
            viewers = tuple(self._viewers)
        for viewer in viewers:
            viewer.offer(data)

    # internals
    def _accept(self) -> None:
        """One thread for every connection that has not said who it is yet (a selector, no
        thread each: a flood of connections costs the run little); each has ATTACH_TIMEOUT
        seconds and one line."""
        selector = selectors.DefaultSelector()
        selector.register(self._sock, selectors.EVENT_READ)
        pending: dict = {}                    # socket -> [bytes so far, deadline]
        while not self._closed.is_set():
            now = time.monotonic()
            for conn in [c for c, (_, deadline) in pending.items() if deadline <= now]:
                selector.unregister(conn)
                del pending[conn]
                conn.close()                  # it never said who it is
            timeout = min([d for _, d in pending.values()], default=now + 0.5) - now
            try:
                events = selector.select(max(0.0, min(timeout, 0.5)))
            except OSError:
                break
            for key, _ in events:
                if key.fileobj is self._sock:
                    self._take_connection(selector, pending)
                    continue
                conn = key.fileobj
                try:
                    chunk = conn.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    chunk = b""
                data = pending[conn][0] + chunk
                end = data.find(b"\n")
                if chunk and end < 0 and len(data) <= wire.MAX_COMMAND_BYTES:
                    pending[conn][0] = data
                    continue
                selector.unregister(conn)
                del pending[conn]
                if not chunk:
                    conn.close()
                elif end < 0:
                    self._turn_away(conn, "not attached: the attach request is too large")
                else:
                    self._greet(conn, data[:end + 1], data[end + 1:])
            with self._lock:
                self._connecting = len(pending)
        selector.close()
        for conn in pending:
            conn.close()

    def _take_connection(self, selector, pending: dict) -> None:
        try:
            conn, _ = self._sock.accept()
        except OSError:
            return
        conn.setblocking(False)
        if len(pending) >= MAX_CONNECTING:   # a flood: a line, and closed
            self.refused += 1
            try:
                conn.send(_BUSY)
            except OSError:
                pass
            conn.close()
            return
        pending[conn] = [b"", time.monotonic() + ATTACH_TIMEOUT]
        selector.register(conn, selectors.EVENT_READ)

    def _greet(self, conn: socket.socket, line: bytes, rest: bytes) -> None:
        """Attach the connection that sent `line`, or turn it away saying why."""
        try:
            request = decode_attach(line)
        except wire.FrameError as error:
            self._turn_away(conn, f"not attached: {error}")
            return
        control, why = self._admit(request.token)
        if why is not None:
            self._turn_away(conn, why)
            return
        with self._lock:
            full = len(self._viewers) >= MAX_VIEWERS or self._closed.is_set()
            if not full:
                conn.settimeout(SEND_TIMEOUT)
                viewer = _Viewer(self, conn, read_lines(conn, wire.MAX_COMMAND_BYTES, initial=rest), control)
                self._viewers.append(viewer)
        if full:
            self._turn_away(conn, f"not attached: {MAX_VIEWERS} viewers are attached already")
            return
        viewer.start()

    def _admit(self, token: str | None) -> tuple:
        """(control, None) to attach, or (False, the reason) to turn away."""
        if token is not None:
            if self.token is not None and hmac.compare_digest(token.encode("utf-8", "replace"),
                                                              self.token.encode()):
                return self.control, None
            return False, "not attached: the token is not this run's (read it from the run's token file)"
        if self.private:
            return False, (f"not attached: this run admits only viewers with its token (from {self.token_file}; "
                           "--attach reads it from there when it can)")
        return False, None

    def why_watch_only(self) -> str:
        if not self.control:
            return (f"this is rank {self.rank} of {self.world}: every rank follows rank 0, so pause, step and "
                    "the rest are given there (attach to rank 0's address)")
        return f"this viewer only watches: attach with the run's token to control it (it is in {self.token_file})"

    def _turn_away(self, conn: socket.socket, message: str) -> None:
        """One line saying why, if the socket takes it now (it never waits), and closed."""
        self.refused += 1
        try:
            conn.setblocking(False)
            conn.send(wire.encode({"type": "refused", "cmd": "attach", "message": message}) + b"\n")
        except OSError:
            pass
        finally:
            conn.close()

    def _drop(self, viewer) -> None:
        with self._lock:
            if viewer in self._viewers:
                self._viewers.remove(viewer)

    def frames_for_new_viewer(self, viewer) -> list:
        """The encoded `attached` frame and the run so far (Worker.catch_up). One catch-up at a
        time, at most one every CATCH_UP_EVERY seconds (viewers that keep attaching cost the
        training little), each serving every viewer waiting for one: their queues are emptied
        at the moment it is taken, so each gets the run up to then and every frame after it,
        nothing twice and nothing lost."""
        with self._catching_up:
            frames = viewer.caught_up
            if frames is None:
                wait = self._last_catch_up + CATCH_UP_EVERY - time.monotonic()
                if wait > 0:
                    time.sleep(wait)      # (this viewer's thread waits, not the training)
                with self._lock:
                    waiting = [v for v in self._viewers if v.catching_up] + [viewer]

                def empty_their_queues():
                    for v in waiting:
                        v.clear()
                frames = [wire.encode(f) for f in self.catch_up(then=empty_their_queues)]
                self._last_catch_up = time.monotonic()
                for v in waiting:
                    v.caught_up = frames
            viewer.caught_up = None
        head = wire.encode({"type": "attached", "control": viewer.control, "rank": self.rank,
                            "world": self.world, "address": str(self.address)})
        return [head, *frames]


class _Viewer:
    """One attached connection: a thread sending its queue, a thread reading its commands."""

    def __init__(self, server: Server, conn: socket.socket, lines, control: bool):
        self.server, self.conn, self.lines, self.control = server, conn, lines, control
        self._cond = threading.Condition()
        self._queue: deque = deque()
        self._bytes = 0
        self._fresh = True        # send the run afresh before the queue (a new or lagging viewer)
        self.catching_up = False  # waiting for the run afresh (Server.frames_for_new_viewer)
        self.caught_up = None     # the catch-up another viewer's thread took for it too
        self._done = False
        self.lagged = 0           # times it fell behind

    def start(self) -> None:
        self._sender = threading.Thread(target=self._send_loop, daemon=True, name="calcml-viewer-out")
        self._sender.start()
        threading.Thread(target=self._read_loop, daemon=True, name="calcml-viewer-in").start()

    def offer(self, data: bytes) -> None:
        with self._cond:
            if self._done:
                return
            if self._bytes + len(data) > QUEUE_BYTES:   # fallen behind: what is queued is old news
                self._queue.clear()
                self._bytes = 0
                self._fresh = True
                self.lagged += 1
            self._queue.append(data)
            self._bytes += len(data)
            self._cond.notify()

    def clear(self) -> None:
        """What was queued before the catch-up is in it already."""
        with self._cond:
            self._queue.clear()
            self._bytes = 0

    def join(self, timeout: float) -> None:
        sender = getattr(self, "_sender", None)
        if sender is not None and sender is not threading.current_thread():
            sender.join(timeout)

    def finish(self) -> None:
        """The run is over: send what is queued (briefly), then close."""
        with self._cond:
            self._done = True
            self._cond.notify()

    def _send_loop(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._fresh and not self._done:
                        self._cond.wait()
                    fresh, self._fresh = self._fresh, False
                    done = self._done and not fresh
                    batch = [] if fresh else list(self._queue)
                    if not fresh:
                        self._queue.clear()
                        self._bytes = 0
                if fresh:
                    self.catching_up = True
                    batch = self.server.frames_for_new_viewer(self)
                    self.catching_up = False
                elif done:
                    self.conn.settimeout(1.0)   # the run is over: a last moment for what was queued
                if batch:
                    self.conn.sendall(b"\n".join(batch) + b"\n")
                if done:
                    return
        except OSError:
            pass
        finally:
            self._close()

    def _read_loop(self) -> None:
        """Commands, checked; a malformed line ends this viewer's connection, nothing else."""
        try:
            for line in self.lines:
                if not line.strip():
                    continue
                try:
                    command = wire.decode_command(line)
                except wire.FrameError as error:
                    self._refuse(None, f"a malformed command: {error}; connection closed")
                    break
                if command["cmd"] == "quit":      # a viewer quitting detaches; the run goes on
                    break
                if not self.control:
                    self._refuse(command["cmd"], self.server.why_watch_only())
                    continue
                self.server.on_command(command)
        except LineTooLong:
            self._refuse(None, f"a command longer than {wire.MAX_COMMAND_BYTES} bytes: connection closed")
        except (OSError, ValueError):
            pass
        finally:
            self.finish()

    def _refuse(self, name, message: str) -> None:
        self.offer(wire.encode({"type": "refused", "cmd": name, "message": message}))

    def _close(self) -> None:
        with self._cond:
            self._done = True
            self._queue.clear()
        self.server._drop(self)
        try:
            self.conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()


class LineTooLong(ValueError):
    pass


class read_lines:
    """The lines (with their newline) arriving on a socket, each at most `limit` bytes (else
    LineTooLong), after `initial` (what came with the attach request). Read with recv, so the
    socket's timeout can serve its sends: a read that times out is waited again (an attached
    viewer may say nothing for hours)."""

    def __init__(self, conn: socket.socket, limit: int, initial: bytes = b""):
        self.conn, self.limit = conn, limit
        self._buffer = initial

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line, self._buffer = self._buffer[:end + 1], self._buffer[end + 1:]
                if len(line) > self.limit + 1:
                    raise LineTooLong()
                return line
            if len(self._buffer) > self.limit:
                raise LineTooLong()
            try:
                chunk = self.conn.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise StopIteration
            self._buffer += chunk


def _remove_stale_socket(path: str) -> None:
    """A socket file left by a run that ended without removing it is removed; one a live run
    is serving on is not (the address is in use)."""
    if not os.path.lexists(path):
        return
    if not stat.S_ISSOCK(os.lstat(path).st_mode):
        raise ServeError(f"{path} exists and is not a socket: choose another address")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(path)
    except OSError:
        os.unlink(path)     # nobody there
        return
    finally:
        probe.close()
    raise ServeError(f"another run is serving at {path}: choose another address")
