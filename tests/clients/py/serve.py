"""The built-in events of `tidings serve` with python-socketio: join, broadcast, bad_request."""

import os

import common
from common import check, check_eq, check_error, client, fail, uniq, WAIT_S

PATH = os.environ.get("TIDINGS_PATH", "/socket.io/")


def connect():
    sio = client()
    common.fail_on_disconnect(sio)
    try:
        sio.connect(common.URL, transports=common.TRANSPORTS, socketio_path=PATH, wait_timeout=WAIT_S)
    except Exception as exc:  # noqa: BLE001
        fail("connect", f"expected to connect, actual {exc}")
    return sio


def main():
    room = uniq("room")
    a, b = connect(), connect()
    inbox = common.Inbox(b, "/").listen("news")
    for name, sio in (("a", a), ("b", b)):
        check_eq(f"{name} join", common.call(f"{name} join", sio, "join", {"room": room}), {"ok": True})
    ack = common.call("broadcast", a, "broadcast", {"room": room, "event": "news", "data": {"x": 1, "b": b"\x00\xff"}})
    check_eq("broadcast ack", ack, {"ok": True, "recipients": 1})
    (data,) = inbox.get("b receives news", "news")
    check_eq("news data, binary stays bytes", data, {"x": 1, "b": b"\x00\xff"})
    check_error("join without room", common.call("bad join", a, "join", {}), "bad_request")
    check_error("broadcast without event", common.call("bad broadcast", a, "broadcast", {"room": room}), "bad_request")
    check("clients connected", a.connected and b.connected, "both connected", (a.connected, b.connected))


common.run(main, checks=11)
