"""One device model served one version at a time, switched without downtime.

:class:`Rollout` runs a worker thread for the version being served.  A reload
(``SIGHUP``, ``flaxdev reload``, or a new version directory found by
polling) loads the new version, refuses it if the live device model cannot
take it (another shape, dtype, normalisation or post chain: the message says
what differs, nothing changes), starts a second worker for it, which compiles
and attaches beside the first, and only then stops the old one, which answers
the jobs it holds before it detaches.  Requests never fail for a reload:
while both are attached either may answer; once the new version is reported
(its run state, :mod:`pyflaxdev.runstate`, and ``READY=1`` to systemd) the
old worker is gone and every answer is the new version's.  A new version
that fails to start leaves the old one serving.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyflaxdev import repository, runstate
from pyflaxdev.errors import FlaxError, InvalidArgument
from pyflaxdev.notify import notify
from pyflaxdev.worker import WorkerStats, block_async_signals

if TYPE_CHECKING:
    from pyflaxdev.models import ModelSpec
    from pyflaxdev.spec import ModelInfo

__all__ = ["Rollout", "differences"]

#: ``start(spec, stop, ready, stats)`` serves ``spec`` until ``stop`` is set, counting
#: in ``stats`` as it goes (``serve()``).
Start = Callable[["ModelSpec", threading.Event, Callable[[], None], WorkerStats], WorkerStats]

# How often the run state gets the serving worker's counters.
PUBLISH_S = 2.0


def differences(spec: ModelSpec, info: ModelInfo) -> list[str]:
    """What ``spec`` would change in the live device model ``info`` that it cannot take."""
    out = []
    if spec.input != info.input:
        out.append(f"input {spec.input} (the model takes {info.input})")
    if spec.output != info.output:
        out.append(f"output {spec.output} (the model gives {info.output})")
    if tuple(spec.post) != tuple(info.post):
        out.append(f"post chain {list(spec.post)} (the model's is {list(info.post)})")
    if "topk" in spec.post and spec.topk != info.topk:
        out.append(f"topk {spec.topk} (the model's is {info.topk}; set it in sysfs)")
    norm = spec.normalize
    if (norm is None) != (info.pre_op != "normalize"):
        out.append("normalisation added or removed")
    return out


def _snapshot(stats: list[WorkerStats], last: dict[str, Any]) -> dict[str, Any]:
    """The workers' ``stats`` summed, as plain data, read from another thread than
    theirs (``last`` if a new batch size came in while they were read)."""
    try:
        return WorkerStats.total(stats).as_dict()
    except RuntimeError:  # a batch_sizes grew during the read
        return last


def _version(spec: ModelSpec) -> int:
    return int(spec.metadata.get("version", 0))


@dataclass(eq=False)
class _Running:
    """One version's worker threads: ``workers`` of them, each attached on its own."""

    spec: ModelSpec
    start: Start
    workers: int = 1
    stop: threading.Event = field(default_factory=threading.Event)
    ready: threading.Event = field(default_factory=threading.Event)
    stats: WorkerStats | None = None
    error: BaseException | None = None
    threads: list[threading.Thread] = field(default_factory=list)
    live: list[WorkerStats] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    start_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _attached: int = 0
    _done: list[WorkerStats] = field(default_factory=list)

    def run(self) -> None:
        self.live = [WorkerStats() for _ in range(self.workers)]
        for i, live in enumerate(self.live):
            name = f"flaxdev-worker-v{_version(self.spec)}-{i}"
            thread = threading.Thread(target=self._body, args=(live,), name=name)
            self.threads.append(thread)
            thread.start()

    def _body(self, live: WorkerStats) -> None:
        block_async_signals()

        def attached() -> None:
            with self._lock:
                self._attached += 1
                if self._attached == self.workers:
                    self.start_seconds = time.monotonic() - self.started
                    self.ready.set()

        try:
            done = self.start(self.spec, self.stop, attached, live)
            with self._lock:
                self._done.append(done)
        except BaseException as exc:
            with self._lock:
                self.error = self.error or exc
        finally:
            self.stop.set()  # one worker gone: the version stops (a supervisor restarts it)

    def alive(self) -> bool:
        """Whether every worker still serves."""
        return bool(self.threads) and all(t.is_alive() for t in self.threads)

    def wait_ready(self) -> bool:
        """True once every worker is attached; False if one ended first (see :attr:`error`)."""
        while not self.ready.wait(0.2):
            if not self.alive():
                return self.ready.is_set()
        return True

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()
        if self._done:
            self.stats = WorkerStats.total(self._done)


@dataclass(eq=False)
class Rollout:
    """Serve model ``name`` from ``spec`` with ``workers`` worker threads, reloading
    with ``load`` (None: no reloads).

    ``info`` is the live device model; ``watch_s`` polls ``latest()`` (the version
    ``load`` would give, cheaply) that often and reloads when it changes (0: only
    on :meth:`request_reload`).  ``say`` logs.
    """

    name: str
    info: ModelInfo
    start: Start
    load: Callable[[], ModelSpec] | None
    say: Callable[[str], object]
    watch_s: float = 0.0
    latest: Callable[[], int] | None = None
    apply_labels: Callable[[ModelSpec], object] | None = None
    workers: int = 1
    wake: threading.Event = field(default_factory=threading.Event)
    stopping: bool = False
    reload_wanted: bool = False
    refused: int | None = None  # the last version refused: polling does not retry it
    served: list[tuple[int, WorkerStats]] = field(default_factory=list)

    def request_stop(self) -> None:
        """Stop serving (from a signal handler)."""
        self.stopping = True
        self.wake.set()

    def request_reload(self) -> None:
        """Look for a new version now (from a signal handler)."""
        self.reload_wanted = True
        self.wake.set()

    def run(self, spec: ModelSpec) -> None:
        """Serve until stopped or the model is destroyed; raise a first worker's error."""
        cur = _Running(spec, self.start, self.workers)
        cur.run()
        if not cur.wait_ready():
            cur.finish()
            if cur.error is not None:
                raise cur.error
            return
        state = runstate.RunState(
            self.name, os.getpid(), _version(spec), spec.metadata.get("versions", []), True
        )
        runstate.touch(state, version=_version(spec), start_seconds=cur.start_seconds)
        notify("READY=1", f"STATUS=serving {self.name} version {_version(spec)}")
        next_poll = time.monotonic() + self.watch_s
        next_publish = time.monotonic() + PUBLISH_S
        try:
            while True:
                self.wake.wait(0.5)
                self.wake.clear()
                if self.stopping or not cur.alive():
                    break
                if time.monotonic() >= next_publish:
                    next_publish = time.monotonic() + PUBLISH_S
                    runstate.touch(state, worker=_snapshot(cur.live, state.worker))
                if self.watch_s and time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + self.watch_s
                    self.reload_wanted = self.reload_wanted or self._newer(cur)
                if self.reload_wanted and self.load is not None:
                    self.reload_wanted = False
                    cur = self._reload(cur, state)
                elif self.reload_wanted:
                    self.reload_wanted = False
                    self.say("reload: a shipped model has no other version")
                    runstate.touch(state, message="a shipped model has no other version",
                                   reloads=state.reloads + 1)  # fmt: skip
        finally:
            notify("STOPPING=1")
            cur.finish()
            runstate.clear(self.name)
            if cur.stats is not None:
                self.served.append((_version(cur.spec), cur.stats))
        if cur.error is not None:
            raise cur.error

    def _newer(self, cur: _Running) -> bool:
        if self.latest is None:
            return False
        try:
            latest = self.latest()
        except FlaxError:
            return False
        return latest not in (_version(cur.spec), self.refused)

    def _reload(self, cur: _Running, state: runstate.RunState) -> _Running:
        assert self.load is not None
        old = _version(cur.spec)

        def keep(why: str, refused: int | None = None) -> _Running:
            self.refused = refused
            self.say(f"reload: {why}; still serving version {old}")
            runstate.touch(state, message=why, reloads=state.reloads + 1)
            notify("READY=1", f"STATUS=serving {self.name} version {old} ({why})")
            return cur

        try:
            new = self.load()
        except FlaxError as exc:
            return keep(str(exc))
        version = _version(new)
        if version == old:
            return keep(f"version {version} is the one serving")
        diff = differences(new, self.info)
        try:
            repository.check_module(new)
        except FlaxError as exc:
            diff.append(str(exc))
        if diff:
            return keep(f"version {version} cannot replace it: " + "; ".join(diff), version)
        notify("RELOADING=1", f"STATUS=starting {self.name} version {version}")
        self.say(f"reload: starting version {version} beside version {old}")
        nxt = _Running(new, self.start, self.workers)
        nxt.run()
        if not nxt.wait_ready():
            nxt.finish()
            return keep(f"version {version} failed to start: {nxt.error}", version)
        cur.finish()  # answers what it holds, then detaches
        if cur.stats is not None:
            self.served.append((old, cur.stats))
        if self.apply_labels is not None:
            self.apply_labels(new)
        runstate.touch(
            state,
            version=version,
            start_seconds=nxt.start_seconds,
            worker=_snapshot(nxt.live, {}),
            versions=new.metadata.get("versions", []),
            message=f"version {version} replaced version {old}",
            reloads=state.reloads + 1,
        )
        notify("READY=1", f"STATUS=serving {self.name} version {version}")
        self.say(f"reload: version {version} serving, version {old} stopped")
        if cur.error is not None:
            self.say(f"version {old} had failed: {cur.error}")
        return nxt


def check_reloadable(spec: ModelSpec, info: ModelInfo) -> None:
    """Raise :class:`InvalidArgument` if ``spec`` cannot serve the live model ``info``."""
    diff = differences(spec, info)
    if diff:
        raise InvalidArgument(f"model {info.name!r}: " + "; ".join(diff))
