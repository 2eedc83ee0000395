"""Dead letters with python-socketio (docs/PROTOCOL.md "Deliveries"), maxDeliveries from env (the
Rust test uses 2), ack timeout far longer than any wait: a message the handler keeps requeuing
is delivered maxDeliveries times, then listed by GET /v1/topics/{t}/dead-letters and no longer
delivered; POST .../dead-letters/{id}/requeue brings it back as a fresh delivery.
"""

import time

from common import check, check_eq, round_trip, uniq
from queue_common import (Deliveries, check_meta, connect_as, http, publish, run, setting,
                          subscribe, subscription_of, topic_info, wait_drained, wait_for)

MAX_DELIVERIES = setting("TIDINGS_MAX_DELIVERIES")
ACK_TIMEOUT_MS = setting("TIDINGS_ACK_TIMEOUT_MS")


def main():
    topic = uniq("dead")
    event = uniq("task")
    client_id = uniq("picky")
    sub_key = f"id:{client_id}"
    state = {"released": False}
    inbox = Deliveries(event, lambda d: "requeue" if isinstance(d.data, dict) and d.data.get("poison")
                       and not state["released"] else "ack")
    worker = connect_as("worker connects", client_id, inbox)
    pub = connect_as("publisher connects")
    subscribe("worker subscribes", worker, {"topic": topic}, pending=0)

    poison = publish("publish the poison message", pub, topic, event, {"poison": True}, offset=1)
    started = time.monotonic()
    for attempt in range(1, MAX_DELIVERIES + 1):
        d = inbox.next(f"poison delivery {attempt}")
        check_meta(f"poison delivery {attempt}", d.meta, topic, poison["id"], 1, attempt)
    elapsed_ms = (time.monotonic() - started) * 1000
    check("requeued deliveries came from the requeue, not the ack timeout", elapsed_ms < ACK_TIMEOUT_MS,
          f"< {ACK_TIMEOUT_MS} ms", round(elapsed_ms))

    path = f"/v1/topics/{topic}/dead-letters"

    def listed():
        status, body = http("GET dead letters", "GET", path)
        check_eq("GET dead letters: status", status, 200)
        return body["deadLetters"] or False

    dead = wait_for("dead letters list the poison message", listed)
    check_eq("one dead letter", len(dead), 1)
    dl = dead[0]
    check_eq("dead letter fields",
             {k: dl.get(k) for k in ("id", "offset", "event", "data", "subscription", "attempts")},
             {"id": poison["id"], "offset": 1, "event": event, "data": {"poison": True},
              "subscription": sub_key, "attempts": MAX_DELIVERIES})
    info = subscription_of("topic info", topic_info("topic info after dead-lettering", topic), sub_key)
    check_eq("subscription counts the dead letter", (info["dead"], info["pending"]), (1, 0))

    nxt = publish("publish after dead-lettering", pub, topic, event, {"ok": 1}, offset=2)
    d = inbox.next("delivery after dead-lettering")
    check_meta("delivery after dead-lettering", d.meta, topic, nxt["id"], 2, 1)
    round_trip("round trip after dead-lettering", worker)
    check_eq("poison message delivered exactly maxDeliveries times",
             sum(1 for x in inbox.items if x.offset == 1), MAX_DELIVERIES)

    status, body = http("requeue an unknown id", "POST", f"{path}/AAAAAAAAAAAAAAAAAAAAAA/requeue")
    check_eq("requeue an unknown id", (status, (body.get("error") or {}).get("code")), (404, "not_found"))
    state["released"] = True
    status, body = http("requeue the poison message", "POST", f"{path}/{poison['id']}/requeue")
    check_eq("requeue the poison message", (status, body), (200, {"requeued": True}))
    back = inbox.next("the requeued dead letter comes back")
    check_meta("the requeued dead letter comes back", back.meta, topic, poison["id"], 1, 1)
    check_eq("no dead letters after the requeue", http("GET dead letters", "GET", path), (200, {"deadLetters": []}))
    wait_drained("queue drains after acking the requeued message", topic, sub_key)
    round_trip("final round trip", worker)
    check_eq("deliveries (offset, attempt)", [(x.offset, x.attempt) for x in inbox.items],
             [(1, a) for a in range(1, MAX_DELIVERIES + 1)] + [(2, 1), (1, 1)])


if __name__ == "__main__":
    run(main, checks=44)
