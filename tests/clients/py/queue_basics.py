"""Durable topics, the request side, with python-socketio (docs/PROTOCOL.md "Durable topics"):
identity_required without a clientId, invalid clientIds refused, bad_request shapes (and nothing
stored for them), the publish ack and idempotency keys (one delivery for a duplicate), history.
"""

from common import call, check_eq, check_error, check_json, round_trip, uniq
from queue_common import (Deliveries, check_meta, connect_as, connect_refused, history, http,
                          publish, run, subscribe, wire_events)


def main():
    # Identity.
    anon = connect_as("connect without clientId")
    topic = uniq("basics")
    for event, payload in [("subscribe", {"topic": topic}),
                           ("subscribe", {"topic": topic, "group": "drivers"}),
                           ("unsubscribe", {"topic": topic})]:
        check_error(f"{event} {payload} without identity", call(event, anon, event, payload), "identity_required")
    for bad in [7, "", "a\x01b", "x" * 201, {"id": "x"}, True]:
        data = connect_refused(f"clientId {bad!r:.20}", {"clientId": bad})
        message = data.get("message") if isinstance(data, dict) else data
        check_eq(f"clientId {bad!r:.20}: connect_error message", message, "invalid clientId")

    # bad_request shapes; nothing is stored for a refused request.
    me = connect_as("connect with clientId", uniq("py-basics"))
    refused = uniq("refused")
    cases = []
    for t in [None, 123, "", "a..b", "bad topic", "x/y", "t" * 201]:
        for event in ("subscribe", "unsubscribe", "history"):
            cases.append((event, {"topic": t}, f"topic {t!r:.12}"))
        cases.append(("publish", {"topic": t, "event": "e", "data": 1}, f"topic {t!r:.12}"))
    for frm in ["latest", 0, -1, 1.5, "1"]:
        cases.append(("subscribe", {"topic": refused, "from": frm}, f"from {frm!r}"))
    for event in ["connect", "disconnect", "connect_error", "disconnecting", "newListener", "removeListener",
                  "", 5, None]:
        cases.append(("publish", {"topic": refused, "event": event, "data": 1}, f"event {event!r}"))
    cases.append(("publish", {"topic": refused, "event": "e", "data": 1, "key": ""}, "empty key"))
    for limit in [0, 1001, "10"]:
        cases.append(("history", {"topic": refused, "limit": limit}, f"limit {limit!r}"))
    for event, payload, label in cases:
        check_error(f"{event} {label}", call(f"{event} {label}", me, event, payload), "bad_request")
    for event in ("subscribe", "publish", "history"):
        check_error(f"{event} with a string payload", call(event, me, event, "a string"), "bad_request")
    # (Binary inside `data` is kept: queue_binary.py.)
    check_eq("history of the refused topic", history("history of the refused topic", me, {"topic": refused}), [])
    status, body = http("GET the refused topic", "GET", f"/v1/topics/{refused}")
    check_eq("GET the refused topic: status", status, 404)
    check_eq("GET the refused topic: code", (body.get("error") or {}).get("code"), "not_found")

    # publish, idempotency keys, deliveries.
    t2 = uniq("publish")
    ev = uniq("ev")
    inbox = Deliveries(ev, "ack")
    sub = connect_as("subscriber connects", uniq("py-sub"), inbox)
    log = sub.wire
    check_json("subscribe ack (exact)", subscribe("subscribe", sub, {"topic": t2}, pending=0),
               {"ok": True, "topic": t2, "group": None, "pending": 0})
    key = uniq("key")
    first = publish("publish with key", anon, t2, ev, {"n": 1}, key=key, offset=1)
    publish("publish with the same key", anon, t2, ev, {"n": "other"}, key=key, offset=1, duplicate=True,
            id=first["id"])
    payloads = [{"z": 1, "a": [1, 2.5, "é✓😀", None, True], "m": {"deep": {}}}, "text", 42, [1, "two"], None]
    acks = [publish(f"publish payload {i}", anon, t2, ev, data, offset=i + 2) for i, data in enumerate(payloads)]
    last = len(payloads) + 1
    inbox.until("all deliveries", lambda items: any(d.offset == last for d in items))
    round_trip("subscriber round trip", sub)
    on_wire = wire_events(log, ev)
    check_eq("one delivery per stored message, in offset order (wire)", [m.get("offset") for _, m in on_wire],
             list(range(1, last + 1)))
    check_eq("the duplicate's data was not stored", on_wire[0][0], {"n": 1})
    check_meta("delivery 1", on_wire[0][1], t2, first["id"], 1, 1)
    for i, data in enumerate(payloads):
        check_json(f"delivery {i + 2}: data (exact JSON)", on_wire[i + 1][0], data)
        check_meta(f"delivery {i + 2}", on_wire[i + 1][1], t2, acks[i]["id"], i + 2, 1)
    check_eq("handler calls", len(inbox.items), last)

    # history {from, limit}.
    h = uniq("history")
    h_acks = [publish(f"history publish {i}", anon, h, "h-event", {"i": i}, offset=i) for i in range(1, 6)]
    msgs = history("history all", anon, {"topic": h})
    check_eq("history all: offsets", [m["offset"] for m in msgs], [1, 2, 3, 4, 5])
    check_eq("history all: ids", [m["id"] for m in msgs], [a["id"] for a in h_acks])
    check_eq("history all: keys", [sorted(m) for m in msgs], [["data", "event", "id", "offset", "publishedAt"]] * 5)
    check_eq("history all: data", [m["data"] for m in msgs], [{"i": i} for i in range(1, 6)])
    check_eq("history from 2 limit 2", [m["offset"] for m in history("h 2/2", anon, {"topic": h, "from": 2, "limit": 2})],
             [2, 3])
    check_eq("history from 6", history("h 6", anon, {"topic": h, "from": 6}), [])
    check_eq("history of an unknown topic", history("h unknown", anon, {"topic": uniq("nobody")}), [])


if __name__ == "__main__":
    run(main, checks=290)
