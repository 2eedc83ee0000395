"""clients/py/tidings_topics.py (the Python helper for durable topics) against `tidings serve`
with python-socketio: publish returns Published(id, offset, duplicate); a handler that returns
acks, one that raises requeues (the message comes back with attempt 2); a subscription made
before connecting handles the backlog; refusals are TidingsError with the server's code."""

import json
import os
import queue
import sys
import urllib.request

import common
from common import check, check_eq, fail, WAIT_S

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "clients", "py"))
from tidings_topics import Published, Topics, TidingsError  # noqa: E402


def connected(client_id, before=None):
    sio = common.client()
    common.fail_on_disconnect(sio)
    topics = Topics(sio, timeout=WAIT_S)
    if before:
        before(topics)
    try:
        sio.connect(common.URL, auth={"clientId": client_id}, transports=common.TRANSPORTS, wait_timeout=WAIT_S)
    except Exception as exc:  # noqa: BLE001
        fail(f"{client_id} connects", f"expected to connect, actual {exc}")
    return topics


def main():
    topic = common.uniq("orders")
    publisher = connected(common.uniq("vendor"))
    first = publisher.publish(topic, "order", {"n": 1})
    check_eq("first publish", (first.offset, first.duplicate, type(first) is Published), (1, False, True))
    keyed = publisher.publish(topic, "order", {"n": 2}, key="k2")
    again = publisher.publish(topic, "order", {"n": 2}, key="k2")
    check_eq("idempotency key", (again.id, again.offset, again.duplicate), (keyed.id, 2, True))
    publisher.publish(topic, "order", {"n": 3})

    seen = queue.Queue()

    def handle(data, meta, event):
        seen.put((data["n"], meta["offset"], meta["attempt"], event))
        if data["n"] == 2 and meta["attempt"] == 1:
            raise RuntimeError("not now")

    # Subscribed before connecting: the backlog (from the earliest) is handled on arrival.
    connected(common.uniq("worker"), before=lambda t: t.subscribe(topic, handle, start="earliest"))
    got = []
    for k in range(4):
        try:
            got.append(seen.get(timeout=15))
        except queue.Empty:
            fail("deliveries", f"expected 4 deliveries (one requeued), actual {got}")
    check_eq("every message once, n=2 again after its requeue",
             sorted(got), [(1, 1, 1, "order"), (2, 2, 1, "order"), (2, 2, 2, "order"), (3, 3, 1, "order")])
    try:
        publisher.publish("", "order", {})
        fail("a bad topic", "expected TidingsError, actual published")
    except TidingsError as exc:
        check_eq("a bad topic is refused", (exc.code, exc.request), ("bad_request", "publish"))
    try:
        publisher.subscribe(common.uniq("t"), handle, start="sometime")
        fail("a bad start", "expected TidingsError, actual subscribed")
    except TidingsError as exc:
        check_eq("a bad start is refused", exc.code, "bad_request")
    # The acks went back: nothing is pending (the last ack follows its handler's return, and
    # no event announces it arriving).
    def settled():
        with urllib.request.urlopen(f"{common.URL}/v1/topics/{topic}") as res:
            pending = [s["pending"] for s in json.load(res)["subscriptions"]]
        return pending == [0] and pending
    check_eq("everything settled", common.poll("everything settled", settled), [0])


common.run(main, seconds=40, checks=7)
