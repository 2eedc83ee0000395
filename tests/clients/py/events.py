"""Events and acks with python-socketio: echo, echo-ack, server-to-client acks (answered and
timed out), the client-side ack timeout, and binary (bytes) in both directions."""

import threading

import socketio

from common import (call, call_ok, check, check_eq, check_error, check_json, connect, fail,
                    round_trip, run, uniq)

ARGS = [
    "hello",
    1,
    1.5,
    -7,
    9007199254740991,
    {"z": 1, "a": 2, "nested": {"y": [1, {"b": None, "a": True}], "x": "x"}},
    None,
    [1, "two", [3, [4]], {}],
    'é✓ 🚀 "quoted" \\ \n newline',
    "",
    True,
    False,
    {},
    [],
]

SMALL = bytes([0, 1, 2, 127, 128, 254, 255])
NESTED = {
    "text": "mixed",
    "list": [1, b"first", {"deeper": [bytes([9, 8, 7])]}],
    "obj": {"second": "second é".encode(), "n": None},
}


def main():
    ping = uniq("ping-me")
    silent = uniq("silent")
    bin_req = uniq("bin-request")
    release = threading.Event()
    sio, inbox, _ = connect("connect", "/", listen=["echo-back"])

    # echo → echo-back with the same arguments (a tuple means several arguments).
    sio.emit("echo", tuple(ARGS))
    got = inbox.get("echo-back", "echo-back")
    check_eq("echo-back args", list(got), ARGS)
    check_json("echo-back JSON text (key order, int vs float)", list(got), ARGS)

    # echo-ack → the ack carries the same arguments.
    acked = call("echo-ack", sio, "echo-ack", tuple(ARGS))
    check_eq("echo-ack args", list(acked), ARGS)
    check_json("echo-ack JSON text", list(acked), ARGS)
    check_eq("echo-ack with one argument", call("echo-ack one", sio, "echo-ack", {"k": [1]}), {"k": [1]})

    # Server → client event with ack, answered with two arguments.
    inbox.listen(ping, reply=lambda data: ("pong", {"x": 1}))
    data = {"q": "are you there?", "n": [1, 2]}
    ans = call("request-ack (answered)", sio, "request-ack", {"event": ping, "data": data, "timeoutMs": 2000})
    check_eq("request-ack: the client got the data", inbox.get("request-ack: event", ping), (data,))
    check_eq("request-ack: reply", ans, {"ok": True, "reply": ["pong", {"x": 1}]})

    # Server → client event with ack that the client answers only after the server gave up.
    # (python-socketio always acks when the handler returns, so the handler holds back.)
    def late(data):
        release.wait(10)
        return "too late"

    inbox.listen(silent, reply=late)
    ans = call("request-ack (late)", sio, "request-ack", {"event": silent, "data": "hello?", "timeoutMs": 300})
    check_eq("request-ack (late): event delivered", inbox.get("request-ack (late): event", silent), ("hello?",))
    check_error("request-ack timeout", ans, "timeout")
    check("request-ack timeout: no reply field", "reply" not in ans, "no reply", ans)
    release.set()  # the late ack goes out now and must be ignored
    round_trip("round trip after a late ack", sio)

    # Client-side ack timeout: the server never acks an unknown event.
    try:
        sio.call(uniq("no-such-event"), {"x": 1}, timeout=0.3)
        fail("unacked event", "expected socketio.exceptions.TimeoutError, actual: an ack")
    except socketio.exceptions.TimeoutError:
        check("unacked event: call() times out", True, "TimeoutError", None)
    round_trip("round trip after a client-side timeout", sio)

    # Binary both ways.
    for label, args in [
        ("bytes", (SMALL,)),
        ("empty bytes", (b"",)),
        ("100 KiB of bytes", (bytes(range(256)) * 400,)),
        ("bytes nested in lists and dicts", (NESTED,)),
        ("bytes and text mixed", (SMALL, "between", NESTED, 42)),
    ]:
        sio.emit("echo", args)
        check_eq(f"echo {label}", inbox.get(f"echo-back for {label}", "echo-back"), args)
    acked = call("echo-ack with bytes", sio, "echo-ack", (NESTED, SMALL))
    check_eq("echo-ack with bytes", acked, (NESTED, SMALL))
    check("echo-ack bytes stay bytes", isinstance(acked[1], bytes), "bytes", type(acked[1]))

    reply = bytes([0xDE, 0xAD, 0xBE, 0xEF])
    inbox.listen(bin_req, reply=lambda data: (reply, {"also": b"x"}))
    ans = call_ok("request-ack with bytes", sio, "request-ack",
                  {"event": bin_req, "data": {"payload": SMALL}, "timeoutMs": 2000})
    check_eq("request-ack: bytes sent to the client", inbox.get("bin event", bin_req), ({"payload": SMALL},))
    check_eq("request-ack: reply holds the client's bytes", ans.get("reply"), [reply, {"also": b"x"}])


if __name__ == "__main__":
    run(main, checks=25)
