"""Bursts to python-socketio: every event must arrive, once, in wire order, and the client must
stay connected.

Regression guard: python-engineio drops the connection when one long-polling response carries
more than 16 packets ("Too many packets in payload"), so a server must cap each polling
response at 16 packets. A burst of 50 (and of 500) over TRANSPORT=polling proves the cap.

Tidings extension: the reference Node server (socket.io 4.8) does not cap its polling
responses, so against reference-app.mjs this scenario fails over TRANSPORT=polling at the
burst of 17 ("disconnect: transport error"); it passes over websocket and upgrade.
"""

import json

from common import TRANSPORT, call, check, check_eq, connect, round_trip, run, uniq, wire_log


def wire_events(log, event):
    """The ``i`` of each ``event`` in the order the read loop saw them (namespace "/")."""
    out = []
    for data in log:
        if isinstance(data, str) and data.startswith("2["):
            try:
                args = json.loads(data[1:])
            except ValueError:
                continue
            if args and args[0] == event:
                out.append(args[1].get("i") if len(args) > 1 and isinstance(args[1], dict) else args[1:])
    return out


def burst(sio, inbox, log, n):
    event = uniq(f"tick{n}")
    inbox.listen(event)
    ack = call(f"burst {n}: ack", sio, "burst", {"n": n, "event": event}, timeout=15)
    check_eq(f"burst {n}: ack", ack, {"ok": True})
    received = [inbox.get(f"burst {n}: event {k + 1} of {n}", event) for k in range(n)]
    round_trip(f"burst {n}: round trip", sio)
    check(f"burst {n}: still connected", sio.connected, "connected", sio.connected)
    check_eq(f"burst {n}: no extra events", inbox.drain(event), [])
    check_eq(f"burst {n}: every i once", sorted(args[0]["i"] for args in received), list(range(n)))
    order = wire_events(log, event)
    bad = next((k for k, i in enumerate(order) if i != k), len(order))
    check(f"burst {n}: wire order", order == list(range(n)), f"i = 0..{n - 1} in order",
          f"{len(order)} events, first mismatch at position {bad}: {order[bad:bad + 5]}")


def main():
    sio, inbox, _ = connect("connect", "/")
    log = wire_log(sio)
    for n in (1, 16, 17, 50, 500):
        burst(sio, inbox, log, n)
    check_eq("transport", sio.transport(), "polling" if TRANSPORT == "polling" else "websocket")


if __name__ == "__main__":
    run(main, 30.0, checks=31)
