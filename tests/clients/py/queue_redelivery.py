"""Redelivery with python-socketio (docs/PROTOCOL.md "Deliveries"), with a short ack timeout and
a requeue backoff longer than it (set by the Rust test, passed in env):
- a handler that does not return within the ack timeout → same message, attempt 2, no earlier
  than the timeout; its late return (ack) is ignored;
- returning {"requeue": True} → same message, attempt 2, no earlier than the backoff (longer than
  the ack timeout, so not the timeout path);
- settled messages are not delivered again.
"""

import time

from common import check, check_eq, fail, round_trip, uniq
from queue_common import (Deliveries, check_meta, connect_as, publish, run, setting, subscribe,
                          wait_drained)

ACK_TIMEOUT_MS = setting("TIDINGS_ACK_TIMEOUT_MS")
BACKOFF_MS = setting("TIDINGS_REQUEUE_BACKOFF_MS")
SLACK_MS = 25


def policy(d):
    if d.attempt != 1:
        return "ack"
    return "hold" if d.offset == 1 else "requeue"


def main():
    if not BACKOFF_MS > ACK_TIMEOUT_MS + 200:
        fail("setup", f"expected TIDINGS_REQUEUE_BACKOFF_MS > TIDINGS_ACK_TIMEOUT_MS + 200, "
                      f"actual {BACKOFF_MS} / {ACK_TIMEOUT_MS}")
    topic = uniq("redelivery")
    event = uniq("job")
    client_id = uniq("worker")
    inbox = Deliveries(event, policy)
    worker = connect_as("worker connects", client_id, inbox)
    pub = connect_as("publisher connects")
    subscribe("worker subscribes", worker, {"topic": topic}, pending=0)

    # Ack timeout.
    # Measured from before the publish: handler threads may start late, so d1.at could be later
    # than the server's emit; the publish certainly precedes it.
    sent = time.monotonic()
    m1 = publish("publish m1", pub, topic, event, {"job": 1}, offset=1)
    d1 = inbox.next("m1 first delivery")
    check_meta("m1 first delivery", d1.meta, topic, m1["id"], 1, 1)
    d2 = inbox.next("m1 redelivery after the ack timeout", ACK_TIMEOUT_MS / 1000 + 5)
    check_meta("m1 redelivery after the ack timeout", d2.meta, topic, m1["id"], 1, 2)
    check_eq("m1 redelivery: data", d2.data, {"job": 1})
    waited = (d2.at - sent) * 1000
    check("m1 redelivered no earlier than the ack timeout", waited >= ACK_TIMEOUT_MS - SLACK_MS,
          f">= {ACK_TIMEOUT_MS} ms", round(waited))
    d1.ack()  # the held handler returns now: a late ack, ignored by the server
    round_trip("round trip after the late ack", worker)
    wait_drained("m1 settled", topic, f"id:{client_id}")

    # Requeue with backoff.
    m2 = publish("publish m2", pub, topic, event, {"job": 2}, offset=2)
    d3 = inbox.next("m2 first delivery")
    check_meta("m2 first delivery", d3.meta, topic, m2["id"], 2, 1)
    d4 = inbox.next("m2 redelivery after requeue", BACKOFF_MS / 1000 + 5)
    check_meta("m2 redelivery after requeue", d4.meta, topic, m2["id"], 2, 2)
    backed_off = (d4.at - d3.at) * 1000
    check("m2 redelivered no earlier than the requeue backoff", backed_off >= BACKOFF_MS - SLACK_MS,
          f">= {BACKOFF_MS} ms", round(backed_off))
    wait_drained("m2 settled", topic, f"id:{client_id}")
    round_trip("final round trip", worker)
    check_eq("deliveries (offset, attempt)", [(d.offset, d.attempt) for d in inbox.items],
             [(1, 1), (1, 2), (2, 1), (2, 2)])


if __name__ == "__main__":
    run(main, checks=38)
