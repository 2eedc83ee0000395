"""python-socketio against a server with Connection State Recovery on.

python-socketio does not implement recovery (it never sends pid/offset); it must still connect,
exchange events and acks, and see every recoverable event with the server's offset string as
the last argument (as with the reference server).
"""

from common import (URL, TRANSPORTS, WAIT_S, Inbox, call_ok, check, check_eq, client,
                    fail, fail_on_disconnect, round_trip, run, uniq)

import socketio


def connect_raw(name):
    sio = client()
    inbox = Inbox(sio, "/").listen("welcome").listen("news")
    fail_on_disconnect(sio, "/")
    try:
        sio.connect(URL, namespaces=["/"], transports=TRANSPORTS, wait_timeout=WAIT_S)
    except socketio.exceptions.ConnectionError as exc:
        fail(name, f"expected to connect, actual ConnectionError: {exc}")
    return sio, inbox


def is_offset(value):
    return isinstance(value, str) and value.isdigit()


def main():
    a, inbox_a = connect_raw("connect a")
    welcome = inbox_a.get("welcome a", "welcome")
    check("welcome: data, then an offset", len(welcome) == 2 and is_offset(welcome[1]),
          "(data, offset)", welcome)
    check_eq("welcome.sid is the client's sid", welcome[0].get("sid"), a.get_sid("/"))
    round_trip("acks carry no offset", a)

    b, _ = connect_raw("connect b")
    room = uniq("py-recovery")
    call_ok("a joins", a, "join", {"room": room})
    call_ok("b broadcasts", b, "broadcast", {"room": room, "event": "news", "data": {"n": 1}})
    news = inbox_a.get("news arrives", "news")
    check("news: data, then an offset", len(news) == 2 and is_offset(news[1]), "(data, offset)",
          news)
    check_eq("news data", news[0], {"n": 1})
    check("offsets grow", int(news[1]) > int(welcome[1]), f"> {welcome[1]}", news[1])


if __name__ == "__main__":
    run(main, checks=8)
