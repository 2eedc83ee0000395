"""Durable subscriptions across reconnects with python-socketio (docs/PROTOCOL.md "Deliveries"):
offline catch-up in offset order (no re-subscribe, new socket id), then live; an ack removes the
message from the queue while history still has it; a delivery left unacked at disconnect comes
back on reconnect with attempt 2, well before the ack timeout.
"""

import time

from common import check, check_eq, round_trip, uniq
from queue_common import (Deliveries, check_meta, connect_as, history, leave, publish, run, setting,
                          subscribe, subscription_of, topic_info, wait_drained, wait_gone,
                          wire_events)

ACK_TIMEOUT_MS = setting("TIDINGS_ACK_TIMEOUT_MS")


def main():
    topic = uniq("catchup")
    event = uniq("order")
    client_id = uniq("a")
    sub_key = f"id:{client_id}"
    pub = connect_as("publisher connects (no identity)")

    a1 = connect_as("a connects", client_id, Deliveries(event, "ack"))
    subscribe("a subscribes", a1, {"topic": topic}, pending=0)
    sid1 = a1.get_sid("/")
    leave(a1)
    wait_gone("server saw a leave", pub, sid1)

    since = int(time.time() * 1000)
    acks = [publish(f"offline publish {i}", pub, topic, event, {"n": i}, offset=i) for i in range(1, 6)]
    offline = subscription_of("topic info while a is offline", topic_info("topic info", topic), sub_key)
    check_eq("a's queue holds the 5 messages", (offline["pending"], offline["inFlight"]), (5, 0))

    inbox = Deliveries(event, "ack")
    a2 = connect_as("a reconnects", client_id, inbox)
    log = a2.wire
    check("a has a new socket id", a2.get_sid("/") != sid1, f"not {sid1}", a2.get_sid("/"))
    inbox.until("catch-up delivers the backlog", lambda items: len(items) >= 5)
    live = publish("live publish", pub, topic, event, {"n": 6}, offset=6)
    inbox.until("live delivery", lambda items: len(items) >= 6)
    round_trip("a round trip", a2)
    on_wire = wire_events(log, event)
    check_eq("backlog then live, in offset order (wire)", [m.get("offset") for _, m in on_wire], [1, 2, 3, 4, 5, 6])
    for i, (data, meta) in enumerate(on_wire):
        check_eq(f"delivery {i + 1}: data", data, {"n": i + 1})
        msg_id = acks[i]["id"] if i < 5 else live["id"]
        check_meta(f"delivery {i + 1}", meta, topic, msg_id, i + 1, 1, published_after=since)

    # Removal on ack.
    wait_drained("a's queue drains after the acks", topic, sub_key)
    sid2 = a2.get_sid("/")
    leave(a2)
    wait_gone("server saw a leave again", pub, sid2)
    inbox3 = Deliveries(event, "ack")
    a3 = connect_as("a reconnects after acking", client_id, inbox3)
    marker = publish("marker publish", pub, topic, event, {"marker": True}, offset=7)
    first = inbox3.next("first delivery after reconnect")
    check_meta("first delivery after reconnect is the marker", first.meta, topic, marker["id"], 7, 1)
    round_trip("a3 round trip", a3)
    check_eq("nothing old after the acks", [d.offset for d in inbox3.items], [7])
    retained = history("history after the acks", pub, {"topic": topic})
    check_eq("acked messages are still retained", [m["offset"] for m in retained], list(range(1, 8)))

    # Redelivery on disconnect.
    wait_drained("a's queue drains after the marker", topic, sub_key)
    sid3 = a3.get_sid("/")
    leave(a3)
    wait_gone("server saw a3 leave", pub, sid3)
    held = Deliveries(event, "hold")
    a4 = connect_as("a connects and will not ack", client_id, held)
    unacked = publish("publish to be left unacked", pub, topic, event, {"n": 8}, offset=8)
    h1 = held.next("delivery before the disconnect")
    check_meta("delivery before the disconnect", h1.meta, topic, unacked["id"], 8, 1)
    left_at = time.monotonic()
    leave(a4)
    again = Deliveries(event, "ack")
    connect_as("a reconnects after leaving a delivery unacked", client_id, again)
    r = again.next("redelivery after the disconnect")
    elapsed_ms = (time.monotonic() - left_at) * 1000
    check_meta("redelivery after the disconnect", r.meta, topic, unacked["id"], 8, 2)
    check_eq("redelivery after the disconnect: data", r.data, {"n": 8})
    check("redelivered by the disconnect, not the ack timeout", elapsed_ms < ACK_TIMEOUT_MS,
          f"< {ACK_TIMEOUT_MS} ms", round(elapsed_ms))
    wait_drained("a's queue drains after the redelivery is acked", topic, sub_key)
    check_eq("exactly one redelivery", [(d.offset, d.attempt) for d in again.items], [(8, 2)])
    h1.ack()  # let the held handler thread finish (its ack goes nowhere: that client is gone)


if __name__ == "__main__":
    run(main, checks=105)
