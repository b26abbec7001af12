"""The other ranks of a torch.distributed run, beside the one the interface is attached to.

Under torchrun every rank serves its own run at an address derived from rank 0's
(serve.for_rank). The interface controls one rank (rank 0 by default: every rank follows it);
`RankPeers` also watches the others, each over its own view-only connection into its own
DebugState, so that at any moment each rank's latest snapshot is at hand. What differs between
them is what each measured before the all-reduce: each layer's ‖∂L/∂out‖ comes from that rank's
own part of the batch. The parameters' gradients are read at optimizer.step, after DDP's
all-reduce: the same on every rank (a difference there means the ranks are out of step).

`spread(snapshots)` puts the numbers side by side; text_status.py and text_inspector.py show
them when `state.ranks` (a RankPeers, or for a test a {rank: snapshot} mapping) is set.
"""
from __future__ import annotations

import math
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from calcml.debug import serve

from .backend import DebugState, read_frames
from .remote import AttachError, connect, find_token

RETRY = 1.0           # seconds between tries to reach a rank not serving yet


def base_address(address: serve.Address, rank: int) -> serve.Address:
    """Rank 0's address, from rank `rank`'s (the inverse of serve.for_rank)."""
    if rank == 0:
        return address
    if address.kind == "unix":
        root, ext = os.path.splitext(address.path)
        tail = f".rank{rank}"
        return address._replace(path=root[:-len(tail)] + ext) if root.endswith(tail) else address
    return address._replace(port=address.port - rank)


class _PeerState(DebugState):
    """A peer rank's state; each snapshot it takes is also told to `on_snapshot`."""

    def __init__(self, on_snapshot):
        super().__init__()
        self._on_snapshot = on_snapshot

    def apply(self, frame) -> None:
        super().apply(frame)
        if type(frame).__struct_config__.tag == "snapshot":
            self._on_snapshot()


class RankPeers:
    """View-only connections to every rank but `own` (whose state is `state`, the attached
    backend's). Each rank is read in its own thread, reached again every RETRY seconds until it
    serves (ranks start serving at their first optimiser step). A peer's new snapshot counts as
    a change of `state`'s snapshot, so that the interface redraws what shows the spread."""

    def __init__(self, state: DebugState, base: serve.Address, world: int, own: int = 0):
        self.state, self.base, self.world, self.own = state, base, world, own
        self.peers: dict[int, _PeerState] = {}
        self.errors: dict[int, str] = {}       # rank -> why it is not connected (yet)
        self._sockets: dict = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def start(self) -> None:
        for rank in range(self.world):
            if rank != self.own:
                self.peers[rank] = _PeerState(self._changed)
                threading.Thread(target=self._follow, args=(rank,), daemon=True, name=f"calcml-rank{rank}").start()

    def _changed(self) -> None:
        state = self.state
        with state.lock:
            state.versions["snapshot"] += 1

    def _follow(self, rank: int) -> None:
        address = serve.for_rank(self.base, rank)
        while not self._closed.is_set():
            try:
                sock, stream, attached = connect(address, find_token(address, None))
            except (AttachError, OSError) as error:
                self.errors[rank] = str(error)
                self._closed.wait(RETRY)
                continue
            with self._lock:
                if self._closed.is_set():
                    sock.close()
                    return
                self._sockets[rank] = sock
            self.errors.pop(rank, None)
            peer = self.peers[rank]
            peer.apply(attached)
            read_frames(stream, peer)
            peer.disconnected(f"the connection to rank {rank} at {address} closed")
            return      # (its run has ended: nothing to reach again)

    def snapshots(self) -> dict:
        """rank -> its latest snapshot (the ranks that have sent one)."""
        out = {}
        for rank, state in [(self.own, self.state), *self.peers.items()]:
            if state.snapshot is not None:
                out[rank] = state.snapshot
        return dict(sorted(out.items()))

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            sockets, self._sockets = list(self._sockets.values()), {}
        for sock in sockets:
            for step in (lambda: sock.shutdown(socket.SHUT_RDWR), sock.close):
                try:
                    step()
                except OSError:
                    pass


def start_peers(backend, base: serve.Address | None = None, world: int | None = None) -> RankPeers | None:
    """For the backend the interface shows of a run of several ranks: the other ranks watched
    (RankPeers, started), set as `backend.state.ranks`, and closed when the backend closes.
    An attached backend (remote.AttachBackend) says its rank and the world itself, and `base`
    (rank 0's address) defaults to the one worked out from its own; a local one (rank 0's own
    run under torchrun) is given both. None for a run of one process."""
    remote = backend.state.remote or {}
    world = int(world or remote.get("world") or 1)
    if world <= 1:
        return None
    own = int(remote.get("rank") or 0)
    peers = RankPeers(backend.state, base or base_address(backend.address, own), world, own)
    peers.start()
    backend.state.ranks = peers
    close = backend.close

    def close_all() -> None:
        peers.close()
        close()
    backend.close = close_all
    return peers


# -- the spread of a statistic across ranks ---------------------------------------------------

@dataclass(frozen=True)
class RankStep:
    rank: int
    step: int
    loss: float


@dataclass(frozen=True)
class LayerSpread:
    """One layer, per rank: ‖∂L/∂out‖ (its own batch's, before the all-reduce) and ‖∂L/∂W‖
    (after it); each spread is max/min over the ranks (None: fewer than two numbers)."""
    name: str
    grad_out: dict
    weight_grad: dict
    grad_out_ratio: float | None
    weight_ratio: float | None


@dataclass(frozen=True)
class Spread:
    world: int
    ranks: tuple               # RankStep per rank with a snapshot, by rank
    layers: dict               # layer name -> LayerSpread, in the model's order

    @property
    def in_step(self) -> bool:
        return len({r.step for r in self.ranks}) <= 1


def rank_snapshots(state) -> dict | None:
    """`state.ranks` as {rank: snapshot}, or None when not attached to several ranks."""
    ranks = getattr(state, "ranks", None)
    if not ranks:
        return None
    return dict(sorted(ranks.items())) if isinstance(ranks, Mapping) else ranks.snapshots()


def world_of(state) -> int:
    ranks = getattr(state, "ranks", None)
    world = getattr(ranks, "world", None) or ((getattr(state, "remote", None) or {}).get("world") or 1)
    return max(int(world), len(ranks) if isinstance(ranks, Mapping) else 0)


def spread(snapshots: Mapping, world: int | None = None) -> Spread | None:
    """The ranks' numbers side by side, from {rank: snapshot}; None without a snapshot."""
    if not snapshots:
        return None
    ordered = sorted(snapshots.items())
    steps = tuple(RankStep(rank, snap.step, snap.loss) for rank, snap in ordered)
    layers: dict = {}
    for rank, snap in ordered:
        for layer in snap.layers:
            entry = layers.setdefault(layer.name, ({}, {}))
            entry[0][rank] = layer.grad_out_norm
            weight = layer.params.get("weight") or next(iter(layer.params.values()), None)
            entry[1][rank] = weight.grad_norm if weight is not None else None
    out = {name: LayerSpread(name, grad_out, weight, ratio(grad_out.values()), ratio(weight.values()))
           for name, (grad_out, weight) in layers.items()}
    return Spread(world or len(ordered), steps, out)


def ratio(values) -> float | None:
    """max/min of the finite positive numbers among `values` (None: fewer than two)."""
    numbers = [float(v) for v in values if v is not None and math.isfinite(v) and v > 0]
    if len(numbers) < 2:
        return None
    return max(numbers) / min(numbers)


def state_spread(state) -> Spread | None:
    """The spread for the interface's state (None: not attached to several ranks)."""
    snapshots = rank_snapshots(state)
    if snapshots is None:
        return None
    return spread(snapshots, world_of(state))
