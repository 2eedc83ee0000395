"""Connecting with python-socketio: auth payloads, namespaces, refusals, disconnects."""

import queue

import socketio

from common import leave
from common import (URL, TRANSPORTS, WAIT_S, Inbox, call, call_ok, check, check_eq, check_json,
                    client, connect, fail, poll, round_trip, run, uniq)


def connect_refused(name, namespace, auth=None):
    """Connects expecting a refusal; returns (ConnectionError text, connect_error handler args)."""
    sio = client()
    errors = queue.Queue()
    sio.on("connect_error", lambda *args: errors.put(args), namespace=namespace)
    try:
        sio.connect(URL, namespaces=[namespace], auth=auth, transports=TRANSPORTS,
                    wait_timeout=WAIT_S)
    except socketio.exceptions.ConnectionError as exc:
        try:
            args = errors.get(timeout=WAIT_S)
        except queue.Empty:
            fail(f"{name}: connect_error handler", "expected a call, actual: none")
        return str(exc), args
    fail(name, f"expected socketio.exceptions.ConnectionError, actual: connected to {namespace}")


def main():
    auth = {"token": "abc", "n": 1}
    a, _, wa = connect("connect / with auth", "/", auth=auth)
    check_eq("welcome.sid is the client's sid", wa.get("sid"), a.get_sid("/"))
    check_eq("welcome.nsp on /", wa.get("nsp"), "/")
    check_eq("welcome.auth equals the auth sent", wa.get("auth"), auth)
    check_json("welcome.auth keeps key order", wa.get("auth"), auth)
    check_eq("welcome keys", list(wa.keys()), ["sid", "nsp", "auth"])

    b, _, wb = connect("connect / without auth", "/")
    check_eq("welcome.auth is {} without auth", wb.get("auth"), {})
    check("distinct sids", a.get_sid("/") != b.get_sid("/"), "distinct sids",
          [a.get_sid("/"), b.get_sid("/")])

    c, _, wc = connect("connect /custom", "/custom")
    check_eq("welcome.nsp on /custom", wc.get("nsp"), "/custom")
    check_eq("welcome.sid on /custom", wc.get("sid"), c.get_sid("/custom"))
    round_trip("round trip on /custom", c, "/custom")

    d, _, wd = connect("connect /dyn-abc", "/dyn-abc")
    check_eq("welcome.nsp on /dyn-abc", wd.get("nsp"), "/dyn-abc")
    check_eq("welcome.sid on /dyn-abc", wd.get("sid"), d.get_sid("/dyn-abc"))
    round_trip("round trip on /dyn-abc", d, "/dyn-abc")

    # One client, two namespaces over one Engine.IO connection.
    m = client()
    root = Inbox(m, "/").listen("welcome")
    custom = Inbox(m, "/custom").listen("welcome")
    gone = queue.Queue()
    m.on("disconnect", lambda *args: gone.put(("/custom",) + args), namespace="/custom")
    try:
        m.connect(URL, namespaces=["/", "/custom"], auth={"k": "v"}, transports=TRANSPORTS,
                  wait_timeout=WAIT_S)
    except socketio.exceptions.ConnectionError as exc:
        fail("multiplexed connect", f"expected to connect, actual {exc}")
    (wm1,) = root.get("multiplexed: welcome on /", "welcome")
    (wm2,) = custom.get("multiplexed: welcome on /custom", "welcome")
    check_eq("multiplexed: welcome.nsp /", wm1.get("nsp"), "/")
    check_eq("multiplexed: welcome.nsp /custom", wm2.get("nsp"), "/custom")
    check_eq("multiplexed: auth on both", [wm1.get("auth"), wm2.get("auth")], [{"k": "v"}] * 2)
    check("multiplexed: sids differ", wm1.get("sid") != wm2.get("sid"), "distinct sids",
          [wm1.get("sid"), wm2.get("sid")])

    # Server-side disconnect of one namespace leaves the other one working.
    m.emit("disconnect-me", namespace="/custom")
    try:
        ev = gone.get(timeout=WAIT_S)
    except queue.Empty:
        fail("disconnect-me /custom: disconnect handler", "expected a call, actual: none")
    check_eq("disconnect-me /custom: reason", ev, ("/custom", socketio.Client.reason.SERVER_DISCONNECT))
    round_trip("round trip on / after /custom was disconnected", m, "/")

    # Refusals.
    text, args = connect_refused("connect /nope", "/nope")
    check_eq("/nope: connect_error data", args, ({"message": "Invalid namespace"},))
    check("/nope: ConnectionError names the namespace", "/nope" in text, "'/nope' in the message", text)
    for label, bad in [("without auth", None), ("with a wrong token", {"token": "wrong"})]:
        text, args = connect_refused(f"connect /secure {label}", "/secure", auth=bad)
        check_eq(f"/secure {label}: connect_error data", args,
                 ({"message": "unauthorized", "data": {"reason": "bad token"}},))
        check(f"/secure {label}: ConnectionError names the namespace", "/secure" in text,
              "'/secure' in the message", text)

    s, _, ws = connect("connect /secure with the token", "/secure", auth={"token": "let-me-in"})
    check_eq("/secure: welcome.nsp", ws.get("nsp"), "/secure")
    check_eq("/secure: welcome.auth", ws.get("auth"), {"token": "let-me-in"})
    check("/secure: connected", s.connected, "True", s.connected)

    # Server-side disconnect of the only namespace.
    reasons = queue.Queue()
    d.on("disconnect", lambda *args: reasons.put(args), namespace="/dyn-abc")
    d.emit("disconnect-me", namespace="/dyn-abc")
    try:
        got = reasons.get(timeout=WAIT_S)
    except queue.Empty:
        fail("disconnect-me: disconnect handler", "expected a call, actual: none")
    check_eq("disconnect-me: reason", got, (socketio.Client.reason.SERVER_DISCONNECT,))

    # Client-side disconnect: the server forgets the socket. b cannot await anything that says
    # the server has seen a's close, so it polls room-sockets, bounded in count.
    room = uniq("leavers")
    call_ok("a joins", a, "join", {"room": room})
    call_ok("b joins", b, "join", {"room": room})
    before = call_ok("room-sockets before", b, "room-sockets", {"room": room})
    check_eq("room-sockets lists a and b", before.get("sids"), sorted([a.get_sid("/"), b.get_sid("/")]))
    aid = a.get_sid("/")
    leave(a)
    def forgotten():
        sids = call_ok("room-sockets after a.disconnect()", b, "room-sockets", {"room": room})["sids"]
        return None if aid in sids else {"sids": sids}

    after = poll("the server forgets a", forgotten, tries=100)
    check_eq("room-sockets after a.disconnect()", after["sids"], [b.get_sid("/")])
    check_eq("b still answers", call("b round trip", b, "echo-ack", "x"), "x")


if __name__ == "__main__":
    run(main, checks=36)
