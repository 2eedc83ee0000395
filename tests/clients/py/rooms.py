"""Rooms with two python-socketio clients: join/leave, membership, broadcast (sender excluded),
emit-except, room-ack, namespace-wide broadcast and bad_request answers.

Proof of absence: after a client's ack round trip, everything the server emitted to it earlier
has arrived, so an empty queue then means "not sent"."""

from common import (call, call_ok, check_eq, check_error, connect, round_trip, run, uniq)


def main():
    hi = uniq("hi")
    ex = uniq("ex")
    ra = uniq("ra")
    p, pin, _ = connect("connect p", "/", listen=[hi, ex])
    q, qin, _ = connect("connect q", "/", listen=[hi, ex])
    ps, qs = p.get_sid("/"), q.get_sid("/")
    r1, r2 = uniq("r1"), uniq("r2")

    call_ok("p joins r1", p, "join", {"room": r1})
    call_ok("q joins r1", q, "join", {"room": r1})
    call_ok("q joins r2", q, "join", {"room": r2})
    check_eq("my-rooms (q)", call_ok("my-rooms q", q, "my-rooms")["rooms"], sorted([qs, r1, r2]))
    check_eq("room-sockets r1", call_ok("room-sockets r1", p, "room-sockets", {"room": r1})["sids"],
             sorted([ps, qs]))

    # Broadcast to r1 reaches q, not the sender.
    ack = call_ok("broadcast r1", p, "broadcast", {"room": r1, "event": hi, "data": {"x": 1, "b": b"\x00\xff"}})
    check_eq("broadcast r1: ack", ack, {"ok": True, "recipients": 1})
    check_eq("broadcast r1: q receives", qin.get("q receives hi", hi), ({"x": 1, "b": b"\x00\xff"},))
    round_trip("round trip with p", p)
    check_eq("broadcast r1: p (sender) received nothing", pin.drain(hi), [])

    # emit-except: r1 except r2 → p only (the sender is not excluded); q is in r2.
    check_eq("emit-except: ack", call_ok("emit-except", p, "emit-except",
                                         {"rooms": [r1], "except": [r2], "event": ex, "data": [1, 2]}),
             {"ok": True})
    check_eq("emit-except: p receives", pin.get("p receives ex", ex), ([1, 2],))
    round_trip("round trip with q", q)
    check_eq("emit-except: q (excepted) received nothing", qin.drain(ex), [])

    # room-ack: both members answer.
    pin.listen(ra, reply=lambda data: {"me": ps, "data": data})
    qin.listen(ra, reply=lambda data: {"me": qs, "data": data})
    ack = call_ok("room-ack r1", q, "room-ack", {"room": r1, "event": ra, "data": 3, "timeoutMs": 2000})
    check_eq("room-ack: replies", sorted(ack.get("replies", []), key=lambda r: r["me"]),
             sorted([{"me": ps, "data": 3}, {"me": qs, "data": 3}], key=lambda r: r["me"]))

    # Namespace-wide broadcast, in a namespace of our own so that other clients don't count.
    nsp = "/dyn-" + uniq("ns").replace("-", "")
    every = uniq("every")
    e, ein, _ = connect("connect e", nsp, listen=[every])
    f, fin, _ = connect("connect f", nsp, listen=[every])
    ack = call_ok("namespace broadcast", e, "broadcast", {"event": every, "data": "all"}, namespace=nsp)
    check_eq("namespace broadcast: ack", ack, {"ok": True, "recipients": 1})
    check_eq("namespace broadcast: f receives", fin.get("f receives", every), ("all",))
    round_trip("round trip with e", e, nsp)
    check_eq("namespace broadcast: e (sender) received nothing", ein.drain(every), [])

    # Leave.
    call_ok("q leaves r1", q, "leave", {"room": r1})
    check_eq("room-sockets r1 after leave", call_ok("room-sockets", p, "room-sockets", {"room": r1})["sids"], [ps])
    check_eq("broadcast after leave: ack",
             call_ok("broadcast after leave", p, "broadcast", {"room": r1, "event": hi, "data": 0}),
             {"ok": True, "recipients": 0})
    round_trip("round trip with q after leave", q)
    check_eq("broadcast after leave: q received nothing", qin.drain(hi), [])

    # Malformed payloads.
    for label, event, payload in [
        ("join {}", "join", {}),
        ("join {room: 5}", "join", {"room": 5}),
        ("join a string", "join", r1),
        ("leave {}", "leave", {}),
        ("broadcast without event", "broadcast", {"room": r1, "data": 1}),
        ("broadcast {event: 5}", "broadcast", {"event": 5}),
    ]:
        check_error(label, call(label, p, event, payload), "bad_request")
    check_eq("my-rooms (p) unchanged", call_ok("my-rooms p", p, "my-rooms")["rooms"], sorted([ps, r1]))


if __name__ == "__main__":
    run(main, checks=51)
