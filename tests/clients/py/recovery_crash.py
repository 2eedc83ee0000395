"""python-socketio and `tidings serve --recovery` killed with SIGKILL, then restarted on the
same port and data directory.

python-socketio does not implement Connection State Recovery (5.18: it never sends pid/offset).
After the restart it reconnects by itself as a new session: a new sid and none of its rooms
(no stale membership), and it works once it joins again — what docs/PROTOCOL.md says. Prints
``CRASH`` when the test should kill and restart the server.
"""

import sys
import threading

from common import (URL, TRANSPORTS, WAIT_S, Inbox, _clients, call_ok, check, check_eq, fail,
                    run, uniq)

import socketio


def reconnecting(name):
    """A client that reconnects by itself (every 0.1-0.2 s) and counts its connects."""
    sio = socketio.Client(reconnection=True, reconnection_delay=0.1, reconnection_delay_max=0.2,
                          randomization_factor=0)
    _clients.append(sio)
    inbox = Inbox(sio, "/").listen("news")
    connects = threading.Semaphore(0)
    sio.on("connect", lambda: connects.release(), namespace="/")
    try:
        sio.connect(URL, namespaces=["/"], transports=TRANSPORTS, wait_timeout=WAIT_S)
    except socketio.exceptions.ConnectionError as exc:
        fail(name, f"expected to connect, actual ConnectionError: {exc}")
    if not connects.acquire(timeout=WAIT_S):
        fail(name, "no connect event")
    return sio, inbox, connects


def main():
    a, inbox_a, a_connects = reconnecting("connect a")
    b, _, b_connects = reconnecting("connect b")
    room = uniq("py-crash")
    call_ok("a joins", a, "join", {"room": room})
    call_ok("b broadcasts", b, "broadcast", {"room": room, "event": "news", "data": "before"})
    check_eq("news before the crash", inbox_a.get("news arrives", "news")[0], "before")
    old_sid = a.get_sid("/")

    sys.stdout.write("CRASH\n")
    sys.stdout.flush()
    check("a reconnects by itself", a_connects.acquire(timeout=30), "a connect", "none in 30 s")
    check("b reconnects by itself", b_connects.acquire(timeout=30), "a connect", "none in 30 s")
    new_sid = a.get_sid("/")
    check("a new session: a new sid", new_sid != old_sid, f"not {old_sid}", new_sid)

    call_ok("b broadcasts to the old room", b, "broadcast",
            {"room": room, "event": "news", "data": "stale"})
    call_ok("b broadcasts to a's new sid", b, "broadcast",
            {"room": new_sid, "event": "news", "data": "sync"})
    # b's broadcasts arrive in order: "stale" would come first.
    check_eq("no stale room", inbox_a.get("sync arrives", "news")[0], "sync")
    call_ok("a joins again", a, "join", {"room": room})
    call_ok("b broadcasts again", b, "broadcast", {"room": room, "event": "news", "data": "after"})
    check_eq("the room works after joining again", inbox_a.get("news after", "news")[0], "after")


if __name__ == "__main__":
    run(main, seconds=60.0, checks=9)
