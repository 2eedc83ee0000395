"""Competing consumers and shared identities with python-socketio (docs/PROTOCOL.md "Deliveries"),
with an ack timeout far longer than any wait here:
- a group of 3 members: each of 30 messages to exactly one member;
- a member holding unacked deliveries disconnects: they reach the other members (attempt 2);
  every message is acked exactly once;
- two sockets of one identity share its subscription: each message to one of them.
"""

from common import WAIT_S, as_one_check, check, check_eq, fail, round_trip, uniq
from queue_common import (Deliveries, check_meta, connect_as, leave, publish, run, setting,
                          subscribe, wait_drained)

ACK_TIMEOUT_MS = setting("TIDINGS_ACK_TIMEOUT_MS")


def main():
    if ACK_TIMEOUT_MS < 2 * WAIT_S * 1000:
        fail("setup", f"expected TIDINGS_ACK_TIMEOUT_MS >= {2 * WAIT_S * 1000:g}, actual {ACK_TIMEOUT_MS}")
    topic = uniq("pickup")
    group = "drivers"
    event = "pickup"
    ids = [uniq("driver-1"), uniq("driver-2"), uniq("driver-3")]
    victim_id = ids[0]
    state = {"victim_holds": False}
    inbox = Deliveries(event, lambda d: "hold" if d.label == victim_id and state["victim_holds"] else "ack")
    members = [connect_as(f"member {i} connects", i, inbox) for i in ids]
    pub = connect_as("publisher connects")
    for n, m in enumerate(members, 1):
        subscribe(f"member {n} joins {group}", m, {"topic": topic, "group": group}, pending=0)

    published = [publish(f"publish {n}", pub, topic, event, {"n": n}, offset=n) for n in range(1, 31)]
    inbox.until("30 deliveries", lambda items: len(items) >= 30)
    for m in members:
        round_trip("member round trip", m)
    items = list(inbox.items)
    check_eq("30 deliveries, no more", len(items), 30)
    check_eq("each message once (union = all 30)", sorted(d.offset for d in items), list(range(1, 31)))
    for d in items:
        check_meta(f"group delivery {d.offset}", d.meta, topic, published[d.offset - 1]["id"], d.offset, 1, group=group)
        check_eq(f"group delivery {d.offset}: data", d.data, {"n": d.offset})
    share = [sum(1 for d in items if d.label == i) for i in ids]
    check("the group spreads the messages over its members", all(n > 0 for n in share), "every member > 0", share)

    # The victim stops acking; publish until it holds at least two deliveries (bounded).
    state["victim_holds"] = True
    phase2 = []

    def publish_until_two_held():
        for _ in range(5):
            for _ in range(3):
                n = 31 + len(phase2)
                phase2.append(publish(f"publish {n}", pub, topic, event, {"n": n}, offset=n))
            total = 30 + len(phase2)
            inbox.until(f"deliveries up to {total}", lambda items, total=total: len(items) >= total)
            if sum(1 for d in inbox.items if d.policy == "hold") >= 2:
                break

    # How many batches that takes is the server's choice: one check for however many.
    as_one_check("publishes until the victim holds two", publish_until_two_held)
    held = [d for d in inbox.items if d.policy == "hold"]
    check("the victim holds unacked deliveries", len(held) >= 2, ">= 2", len(held))
    held_offsets = sorted(d.offset for d in held)

    leave(members[0])
    inbox.until("the victim's unacked messages reach the others",
                lambda items: sum(1 for d in items if d.attempt == 2) >= len(held))
    for m in members[1:]:
        round_trip("survivor round trip", m)
    again = [d for d in inbox.items if d.attempt == 2]
    check_eq("redelivered exactly the held messages", sorted(d.offset for d in again), held_offsets)
    def each_redelivery():
        for d in again:
            check(f"redelivery {d.offset} went to a survivor", d.label != victim_id, "not the victim", d.label)
            check_meta(f"redelivery {d.offset}", d.meta, topic, phase2[d.offset - 31]["id"], d.offset, 2,
                       group=group)

    as_one_check("each redelivery", each_redelivery)
    settled = sorted(d.offset for d in inbox.items if d.policy == "ack")
    check_eq("every message acked exactly once", settled, list(range(1, 31 + len(phase2))))
    wait_drained("the group's queue drains", topic, f"group:{group}")
    for d in held:
        d.ack()  # let the held handler threads finish (their client is gone)

    # Two sockets of one identity share its subscription.
    shared = uniq("shared")
    t9 = uniq("shared-topic")
    shared_inbox = Deliveries("share", "ack")
    s1 = connect_as("shared identity, socket 1", shared, shared_inbox)
    s2 = connect_as("shared identity, socket 2", shared, shared_inbox)
    subscribe("socket 1 subscribes", s1, {"topic": t9}, pending=0)
    subscribe("socket 2 subscribes (same subscription)", s2, {"topic": t9}, pending=0)
    for n in range(1, 11):
        publish(f"shared publish {n}", pub, t9, "share", {"n": n}, offset=n)
    shared_inbox.until("10 shared deliveries", lambda items: len(items) >= 10)
    round_trip("socket 1 round trip", s1)
    round_trip("socket 2 round trip", s2)
    check_eq("each message to one socket of the identity", sorted(d.offset for d in shared_inbox.items),
             list(range(1, 11)))
    by_socket = [sum(1 for d in shared_inbox.items if d.sio is s) for s in (s1, s2)]
    check("both sockets of the identity receive deliveries", all(n > 0 for n in by_socket), "both > 0", by_socket)


if __name__ == "__main__":
    run(main, checks=408)
