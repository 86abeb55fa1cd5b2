"""The deadline watchdog every driver shares (credcheck._watchdog): one thread, many sockets."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from credcheck import _watchdog


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _blocked_read(sock: socket.socket) -> threading.Thread:
    """A thread blocked reading ``sock`` (as a driver's read is), which ends when the socket is shut down."""
    sock.settimeout(60)
    thread = threading.Thread(target=sock.recv, args=(1,), daemon=True)
    thread.start()
    return thread


class TestWatchdog:
    def test_fires_at_the_deadline_and_wakes_the_read(self) -> None:
        """A watchdog past its deadline shuts its socket down: a read blocked on it returns, and ``fired`` says so."""
        watcher = _watchdog.Watcher()
        ours, theirs = socket.socketpair()
        with ours, theirs:
            reader = _blocked_read(ours)
            dog = watcher.arm(0.05)
            dog.attach(ours)
            reader.join(30)
            assert not reader.is_alive() and dog.fired
            dog.disarm()

    def test_attached_after_the_deadline_is_shut_at_once(self) -> None:
        """A socket attached to a watchdog that already fired is shut as it is attached."""
        watcher = _watchdog.Watcher()
        dog = watcher.arm(0)
        ours, theirs = socket.socketpair()
        with ours, theirs:
            reader = _blocked_read(ours)
            while not dog.fired:
                threading.Event().wait(0.01)
            dog.attach(ours)
            reader.join(30)
            assert not reader.is_alive()

    def test_disarmed_never_touches_the_socket(self) -> None:
        """A watchdog disarmed before its deadline leaves the socket alone when the deadline passes."""
        clock = FakeClock()
        watcher = _watchdog.Watcher(clock)
        ours, theirs = socket.socketpair()
        with ours, theirs:
            dog = watcher.arm(1.0)
            dog.attach(ours)
            dog.disarm()
            clock.now = 5.0
            fence = watcher.arm(0)  # fires only after the thread has looked at everything due before it
            while not fence.fired:
                threading.Event().wait(0.01)
            assert not dog.fired
            theirs.sendall(b"x")
            assert ours.recv(1) == b"x"

    def test_disarmed_entries_do_not_pile_up(self) -> None:
        """Many requests armed and disarmed long before their deadlines leave a bounded heap (one thread, no leak)."""
        watcher = _watchdog.Watcher()
        for _ in range(20_000):
            watcher.arm(3600.0).disarm()
        assert len(watcher._heap) <= 2 * _watchdog._COMPACT_AFTER + 2

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
    def test_works_in_a_forked_child(self) -> None:
        """A child forked after the parent's watcher started gets a watcher of its own that fires."""
        _watchdog.arm(3600.0).disarm()  # the parent's thread is running
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit status
            ok = False
            try:
                ours, _theirs = socket.socketpair()  # the other end stays open: the read blocks
                reader = _blocked_read(ours)
                dog = _watchdog.arm(0.05)
                dog.attach(ours)
                reader.join(10)
                ok = dog.fired and not reader.is_alive()
            finally:
                os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
