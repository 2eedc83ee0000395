"""python-socketio through a load balancer in front of several tidings nodes on one Redis
(docs/DEPLOY.md's nginx and HAProxy configs, run by crates/tidings/tests/docs.rs): clients join
one room and every client's broadcasts reach the others, whichever node each landed on. Its
requests session keeps the balancer's cookie, so HAProxy keeps a long-polling session on its
node; a balancer that does not fails it ("Session ID unknown" → disconnect)."""

import socketio

import common
from common import check_eq, fail, WAIT_S

CLIENTS = 4
ROUNDS = 10


def connect():
    sio = common.client()
    common.fail_on_disconnect(sio)
    try:
        sio.connect(common.URL, transports=common.TRANSPORTS, wait_timeout=WAIT_S)
    except socketio.exceptions.ConnectionError as exc:
        fail("connect through the balancer", f"expected to connect, actual {exc}")
    return sio


def main():
    room = common.uniq("room")
    clients = [connect() for _ in range(CLIENTS)]
    inboxes = [common.Inbox(sio, "/").listen("news") for sio in clients]
    for i, sio in enumerate(clients):
        check_eq(f"client {i} joins", common.call("join", sio, "join", {"room": room}), {"ok": True})
    acked = 0
    for r in range(ROUNDS):
        for i, sio in enumerate(clients):
            ack = common.call("broadcast", sio, "broadcast",
                              {"room": room, "event": "news", "data": {"from": i, "r": r}})
            if isinstance(ack, dict) and ack.get("ok") is True:
                acked += 1
    check_eq("every broadcast acked", acked, CLIENTS * ROUNDS)
    for i, inbox in enumerate(inboxes):
        got = [inbox.get(f"client {i} receives news {n}", "news", timeout=20) for n in range((CLIENTS - 1) * ROUNDS)]
        senders = sorted({data["from"] for (data,) in got})
        check_eq(f"client {i} hears every other client", senders, [j for j in range(CLIENTS) if j != i])


common.run(main, seconds=60, checks=2 * CLIENTS + 1)
