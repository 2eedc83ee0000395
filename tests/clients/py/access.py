"""Access control with python-socketio (docs/SECURITY.md): the token's `sub` is the identity,
permissions answer `forbidden`, bad tokens are refused with connect_error, and a token that
expires while connected ends in `tidings:disconnecting` and a server disconnect.

env: TOKENS (JSON object of named tokens, minted by crates/tidings/tests/access.rs), JWT_SECRET
(to mint the short-lived token here, so interpreter start-up time does not count).
"""

import base64
import hashlib
import hmac
import json
import os
import queue
import time

import socketio

import common
from common import WAIT_S, call, check, check_eq, check_error, client, fail, uniq

T = json.loads(os.environ.get("TOKENS", "{}"))


def mint(claims):
    def b64(value):
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    head = b64({"alg": "HS256", "typ": "JWT"}) + "." + b64(claims)
    sig = hmac.new(os.environ["JWT_SECRET"].encode(), head.encode(), hashlib.sha256).digest()
    return head + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()


def connect(name, auth, events=()):
    sio = client()
    inbox = common.Inbox(sio, "/")
    for event in events:
        inbox.listen(event)
    common.fail_on_disconnect(sio)
    try:
        sio.connect(common.URL, auth=auth, transports=common.TRANSPORTS, wait_timeout=WAIT_S)
    except socketio.exceptions.ConnectionError as exc:
        fail(name, f"expected to connect, actual ConnectionError: {exc}")
    return sio, inbox


def refused(name, auth, message_part, code):
    """Connects expecting connect_error; checks the CONNECT_ERROR payload."""
    sio = socketio.Client(reconnection=False)
    errors = queue.Queue()
    sio.on("connect_error", lambda data=None: errors.put(data))
    try:
        sio.connect(common.URL, auth=auth, transports=common.TRANSPORTS, wait_timeout=WAIT_S)
    except socketio.exceptions.ConnectionError:
        pass
    else:
        sio.disconnect()
        fail(name, "expected connect_error, actual: connected")
    try:
        data = errors.get(timeout=WAIT_S)
    except queue.Empty:
        fail(name, "expected a connect_error payload, actual: none")
    check(f"{name}: message", isinstance(data, dict) and message_part in str(data.get("message")),
          f"a message with {message_part!r}", data)
    check(f"{name}: data.code", (data.get("data") or {}).get("code") == code, code, data)
    try:
        sio.disconnect()
    except Exception:  # noqa: BLE001 - nothing to close after a refused connect
        pass


def main():
    topic = uniq("orders.p")
    alice, inbox = connect("alice connects", {"token": T["alice"], "clientId": "bob"}, ["order"])
    check_eq("alice subscribe", call("subscribe", alice, "subscribe", {"topic": topic}),
             {"ok": True, "topic": topic, "group": None, "pending": 0})
    check_error("publish outside the claim",
                call("publish secret", alice, "publish", {"topic": "secret.p", "event": "e", "data": 1}),
                "forbidden")
    check_error("subscribe outside the claim",
                call("subscribe secret", alice, "subscribe", {"topic": "secret.p"}), "forbidden")
    check_error("join outside the claim", call("join room.b", alice, "join", {"room": "room.b"}),
                "forbidden")
    ack = call("publish", alice, "publish", {"topic": topic, "event": "order", "data": {"n": 1}})
    check("publish inside the claim", ack.get("ok") is True and ack.get("offset") == 1, "ok, offset 1", ack)
    data, meta = inbox.get("delivery to alice", "order")
    check_eq("delivery", (data, meta["offset"]), ({"n": 1}, 1))

    refused("no token", {"clientId": "alice"}, "a token is required", "unauthorized")
    refused("expired token", {"token": T["expired"]}, "token expired", "token_expired")
    refused("forged token", {"token": T["forged"]}, "signature does not match", "unauthorized")
    refused("alg none", {"token": T["none"]}, "algorithm", "unauthorized")

    # A token that expires while connected (the server's leeway is 0).
    dave = socketio.Client(reconnection=False)
    notices, gone = queue.Queue(), queue.Queue()
    dave.on("tidings:disconnecting", lambda body: notices.put(body))
    dave.on("disconnect", lambda reason=None: gone.put(reason))
    dave.connect(common.URL, auth={"token": mint({"sub": "dave", "exp": int(time.time()) + 3})},
                 transports=common.TRANSPORTS, wait_timeout=WAIT_S)
    try:
        notice = notices.get(timeout=10)
    except queue.Empty:
        fail("expiry notice", "expected tidings:disconnecting within 10 s, actual: none")
    check_eq("expiry notice code", notice.get("code"), "token_expired")
    try:
        reason = gone.get(timeout=10)
    except queue.Empty:
        fail("disconnect at expiry", "expected a disconnect within 10 s, actual: none")
    check_eq("disconnect reason", reason, socketio.Client.reason.SERVER_DISCONNECT)

    check_eq("alice still served", call("alice join", alice, "join", {"room": "room.a"}), {"ok": True})


common.run(main, seconds=40, checks=23)
