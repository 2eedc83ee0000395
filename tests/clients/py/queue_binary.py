"""Binary data in durable messages with python-socketio against `tidings serve`
(crates/tidings/tests/durable_binary.rs runs it after js/queue-binary.mjs published).

Connects as TIDINGS_CLIENT, subscribes to TIDINGS_TOPIC from the earliest message and receives
messages 1..TIDINGS_COUNT with their binary parts as ``bytes``, byte for byte (the same
messages as js/queue-binary.mjs's ``expected``). MODE=requeue-once answers each first delivery
with {"requeue": True} and checks the redelivery carries the same bytes; MODE=ack acks each.
MIN_ATTEMPT: the least attempt expected (2 for a redelivery after a restart).
"""

import os
import threading
import time

import socketio

import common
from common import URL, TRANSPORTS, WAIT_S, call, check, check_eq, client, fail, fail_on_disconnect

TOPIC = os.environ.get("TIDINGS_TOPIC", "")
EVENT = "file"


def pattern(seed, length):
    """``length`` bytes of pattern ``seed``: (seed * 31 + i * 7) mod 256."""
    return bytes((seed * 31 + i * 7) % 256 for i in range(length))


def expected(n):
    return {
        1: {"n": 1, "file": pattern(1, 256), "nested": {"list": [pattern(2, 10), "text", {"deep": b""}]}},
        2: pattern(4, 70_000),
        3: [1, pattern(5, 3), None, {"x": [pattern(6, 1), pattern(7, 2)]}],
        4: {"http": True, "b": pattern(8, 300)},
    }[n]


def main():
    count = int(os.environ["TIDINGS_COUNT"])
    mode = os.environ.get("MODE", "ack")
    min_attempt = int(os.environ.get("MIN_ATTEMPT", "1"))
    client_id = os.environ["TIDINGS_CLIENT"]
    got = {}
    cond = threading.Condition()

    sio = client()

    def on_file(data, meta):
        with cond:
            seen = got.setdefault(meta.get("offset"), [])
            seen.append((data, meta))
            first = len(seen) == 1
            cond.notify_all()
        if mode == "requeue-once" and first:
            return {"requeue": True}
        return None

    sio.on(EVENT, on_file)
    fail_on_disconnect(sio)
    try:
        sio.connect(URL, auth={"clientId": client_id}, transports=TRANSPORTS, wait_timeout=WAIT_S)
    except socketio.exceptions.ConnectionError as exc:
        fail("connect", f"expected to connect, actual {exc}")
    ack = call("subscribe", sio, "subscribe", {"topic": TOPIC, "from": "earliest"})
    check("subscribe: ok", isinstance(ack, dict) and ack.get("ok") is True, "ok: True", ack)
    wanted = 2 if mode == "requeue-once" else 1
    deadline = time.monotonic() + 4 * WAIT_S
    with cond:
        while not all(len(got.get(n, [])) >= wanted for n in range(1, count + 1)):
            left = deadline - time.monotonic()
            if left <= 0:
                fail(f"{client_id}: {count} messages, each {wanted}x",
                     f"got {[(o, len(d)) for o, d in sorted(got.items())]}")
            cond.wait(left)
        snapshot = {n: list(got[n]) for n in range(1, count + 1)}
    for n, deliveries in snapshot.items():
        for i, (data, meta) in enumerate(deliveries):
            what = f"{client_id}: message {n} delivery {i + 1}"
            check_eq(f"{what}: data byte for byte (bytes)", data, expected(n))
            check(f"{what}: attempt", meta.get("attempt", 0) >= min_attempt + i, f">= {min_attempt + i}", meta)
    # The history ack carries the messages' binary as bytes too (a BINARY_ACK).
    hist = call("history", sio, "history", {"topic": TOPIC})
    check("history: ok", isinstance(hist, dict) and hist.get("ok") is True, "ok: True", hist)
    for n in range(1, count + 1):
        check_eq(f"history of {n}: data byte for byte (bytes)", hist["messages"][n - 1]["data"], expected(n))
    sio.disconnect()


common.run(main, seconds=60.0, checks=14)
