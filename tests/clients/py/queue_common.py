"""Helpers for the durable-queue scenarios (queue_*.py), on top of common.py.

The scenarios speak docs/PROTOCOL.md ("Durable topics") with the unmodified python-socketio
sync client. Server settings a scenario depends on (ack timeout, requeue backoff, ...) come from
``TIDINGS_*`` env variables that the Rust test sets from the QueueConfig it started the server
with (crates/tidings-server/tests/queue_support); ``setting()`` reads them.

python-socketio runs each event handler in a thread of its own, and sends the handler's return
value as the ack when it returns: ``None`` (or anything but ``{"requeue": True}``) settles a
delivery, ``{"requeue": True}`` requeues it, and a handler that has not returned yet has not
acked ("hold": it blocks on an Event until released, bounded). Because handlers run in threads,
arrival order is taken from the wire (``common.wire_log``), not from handler order.
"""

import json
import os
import re
import threading
import time
import urllib.error
import urllib.request

import socketio

import common
from common import leave  # noqa: F401 - re-exported for the queue scenarios
from common import (PARSER, TRANSPORTS, URL, WAIT_S, call, check, check_eq, client, fail,
                    fail_on_disconnect, wire_log)

# Watchdog of the queue scenarios: every wait is bounded, but their sum on a machine under heavy
# load (many scenarios and servers at once) can pass common.py's 20 s default.
WATCHDOG_S = 40.0

# A hold never outlives the scenario's watchdog; it exists only to keep an ack from being sent.
HOLD_S = 60.0


def setting(name):
    """A numeric server setting from env ``name``; fails the scenario if it is missing."""
    raw = os.environ.get(name)
    try:
        return int(raw)
    except (TypeError, ValueError):
        fail("setup", f"env {name} is required (the server's queue setting; the Rust test sets it), got {raw!r}")


class Delivery:
    def __init__(self, data, meta, label, sio):
        self.data = data
        self.meta = meta if isinstance(meta, dict) else {}
        self.raw_meta = meta
        self.label = label
        self.sio = sio
        self.at = time.monotonic()
        self.policy = None
        self.release = threading.Event()
        self.answer = None

    def ack(self, answer=None):
        """Lets a held delivery's handler return (and so ack with ``answer``)."""
        self.answer = answer
        self.release.set()

    @property
    def offset(self):
        return self.meta.get("offset")

    @property
    def attempt(self):
        return self.meta.get("attempt")

    def __repr__(self):
        return f"<{self.label} offset={self.offset} attempt={self.attempt} {self.policy}>"


class Deliveries:
    """Records every delivery of one event on the clients it is attached to and answers each by
    ``policy``: "ack", "requeue", "hold", or a function ``delivery -> policy``."""

    def __init__(self, event, policy="ack"):
        self.event = event
        self.policy = policy
        self.items = []
        self.cursor = 0
        self.cond = threading.Condition()

    def attach(self, sio, label):
        def handler(*args):
            if len(args) != 2:
                fail(f"delivery of {self.event} to {label}", f"expected (data, meta), actual {args!r}")
            d = Delivery(args[0], args[1], label, sio)
            policy = self.policy(d) if callable(self.policy) else self.policy
            d.policy = policy
            with self.cond:
                self.items.append(d)
                self.cond.notify_all()
            if policy == "ack":
                return None
            if policy == "requeue":
                return {"requeue": True}
            if policy != "hold":
                fail("Deliveries policy", f"expected ack|requeue|hold, actual {policy!r}")
            d.release.wait(HOLD_S)
            return d.answer

        sio.on(self.event, handler)

    def until(self, name, pred, timeout=WAIT_S):
        """Returns a snapshot of the items once ``pred(items)`` holds; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self.items):
                left = deadline - time.monotonic()
                if left <= 0:
                    fail(name, f"expected the condition on {self.event} deliveries within {timeout:g} s, "
                               f"actual {self.items!r}")
                self.cond.wait(left)
            return list(self.items)

    def next(self, name, timeout=WAIT_S):
        """The next delivery not returned by ``next`` yet (in handler order)."""
        i = self.cursor
        items = self.until(name, lambda items: len(items) > i, timeout)
        self.cursor = i + 1
        return items[i]


class Notices:
    """Records every ``event`` with one argument (e.g. ``tidings:gap``)."""

    def __init__(self, event):
        self.event = event
        self.items = []
        self.cond = threading.Condition()

    def attach(self, sio, label):
        def handler(*args):
            with self.cond:
                self.items.append(args)
                self.cond.notify_all()

        sio.on(self.event, handler)

    def until(self, name, pred, timeout=WAIT_S):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self.items):
                left = deadline - time.monotonic()
                if left <= 0:
                    fail(name, f"expected the condition on {self.event} within {timeout:g} s, actual {self.items!r}")
                self.cond.wait(left)
            return list(self.items)


def connect_as(name, client_id=None, *listeners, expect_disconnect=False):
    """Connects a new client (as ``client_id``, or without identity) with ``listeners`` attached
    first, and waits for the interop app's ``welcome``. Returns the client; ``sio.wire`` is its
    ``wire_log`` (installed before the CONNECT, since deliveries may follow it at once)."""
    sio = client()
    sio.wire = wire_log(sio)
    welcome = threading.Event()
    sio.on("welcome", lambda *_: welcome.set())
    for listener in listeners:
        listener.attach(sio, client_id)
    if expect_disconnect:
        sio.on("disconnect", lambda *_: None)
    else:
        fail_on_disconnect(sio)
    auth = {"clientId": client_id} if client_id is not None else None
    try:
        sio.connect(URL, auth=auth, transports=TRANSPORTS, wait_timeout=WAIT_S)
    except socketio.exceptions.ConnectionError as exc:
        fail(name, f"expected to connect, actual ConnectionError: {exc}")
    if not welcome.wait(WAIT_S):
        fail(name, f"expected welcome within {WAIT_S:g} s, actual none")
    return sio


def run(main, seconds=WATCHDOG_S, checks=None):
    """``common.run`` with the queue scenarios' longer watchdog (``common.done`` leaves every
    client through ``common.leave``)."""
    common.run(main, seconds, checks=checks)


def connect_refused(name, auth):
    """Connects with ``auth`` expecting a refusal; returns the connect_error data."""
    sio = client()
    errors = []
    sio.on("connect_error", lambda data=None: errors.append(data))
    try:
        sio.connect(URL, auth=auth, transports=TRANSPORTS, wait_timeout=WAIT_S)
    except socketio.exceptions.ConnectionError:
        pass
    else:
        fail(name, "expected connect_error, actual: connected")
    check(f"{name}: connect_error received", len(errors) == 1, "one connect_error", errors)
    return errors[0]


def subscribe(name, sio, payload, pending=None):
    """``subscribe``; checks ``{ok: True, topic, group, pending}`` and returns the ack."""
    ack = call(name, sio, "subscribe", payload)
    check(f"{name}: ok", isinstance(ack, dict) and ack.get("ok") is True, "ok: True", ack)
    check_eq(f"{name}: ack keys", sorted(ack), ["group", "ok", "pending", "topic"])
    check_eq(f"{name}: topic", ack["topic"], payload["topic"])
    check_eq(f"{name}: group", ack["group"], payload.get("group"))
    check(f"{name}: pending is a count", isinstance(ack["pending"], int) and ack["pending"] >= 0,
          "an integer >= 0", ack["pending"])
    if pending is not None:
        check_eq(f"{name}: pending", ack["pending"], pending)
    return ack


def publish(name, sio, topic, event, data, key=None, offset=None, duplicate=False, id=None):
    """``publish``; checks ``{ok: True, id, offset, duplicate}`` and returns the ack."""
    payload = {"topic": topic, "event": event, "data": data}
    if key is not None:
        payload["key"] = key
    ack = call(name, sio, "publish", payload)
    check(f"{name}: ok", isinstance(ack, dict) and ack.get("ok") is True, "ok: True", ack)
    check_eq(f"{name}: ack keys", sorted(ack), ["duplicate", "id", "offset", "ok"])
    check(f"{name}: id is a non-empty string", isinstance(ack["id"], str) and ack["id"] != "",
          "a non-empty string", ack["id"])
    check(f"{name}: offset >= 1", isinstance(ack["offset"], int) and ack["offset"] >= 1, "an integer >= 1",
          ack["offset"])
    check(f"{name}: duplicate", ack["duplicate"] is duplicate, repr(duplicate), ack["duplicate"])
    if offset is not None:
        check_eq(f"{name}: offset", ack["offset"], offset)
    if id is not None:
        check_eq(f"{name}: id", ack["id"], id)
    return ack


def history(name, sio, payload):
    ack = call(name, sio, "history", payload)
    check(f"{name}: ok", isinstance(ack, dict) and ack.get("ok") is True and isinstance(ack.get("messages"), list),
          "{ok: True, messages: [...]}", ack)
    return ack["messages"]


def check_meta(name, meta, topic, id, offset, attempt, group=None, published_after=None):
    """Checks a delivery's meta is exactly {topic, id, offset, group?, attempt, publishedAt}."""
    keys = ["attempt", "id", "offset", "publishedAt", "topic"] + (["group"] if group is not None else [])
    check_eq(f"{name}: meta keys", sorted(meta or {}), sorted(keys))
    rest = {k: v for k, v in meta.items() if k != "publishedAt"}
    expected = {"topic": topic, "id": id, "offset": offset, "attempt": attempt}
    if group is not None:
        expected["group"] = group
    check_eq(f"{name}: meta", rest, expected)
    published = meta["publishedAt"]
    now = int(time.time() * 1000)
    lo = (published_after if published_after is not None else now - 3_600_000) - 1000
    check(f"{name}: meta.publishedAt",
          isinstance(published, int) and not isinstance(published, bool) and lo <= published <= now + 1000,
          f"an integer in [{lo}, now + 1 s]", published)


def http(name, method, path):
    """One request to the server's /v1 API: ``(status, parsed JSON body)``."""
    req = urllib.request.Request(URL + path, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=WAIT_S) as res:
            status, body = res.status, res.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    except OSError as exc:
        fail(name, f"expected an HTTP answer, actual {type(exc).__name__}: {exc}")
    try:
        return status, json.loads(body)
    except ValueError:
        fail(name, f"expected a JSON body, actual {body[:200]!r}")


def topic_info(name, topic):
    status, body = http(name, "GET", f"/v1/topics/{topic}")
    check_eq(f"{name}: status", status, 200)
    return body


def subscription_of(name, info, key):
    for sub in info.get("subscriptions", []):
        if sub.get("name") == key:
            return sub
    fail(name, f"expected a subscription named {key}, actual {info!r}")


def wait_for(name, probe, tries=150, every_s=0.02):
    """Polls ``probe`` (returns a truthy value once the server state is reached), bounded in
    count (``common.poll``: one check however many probes). Only for server state no event
    announces (a store commit, a dead-lettering)."""
    return common.poll(name, probe, tries, every_s)


def wait_drained(name, topic, key):
    """Waits until the subscription ``key`` on ``topic`` has nothing pending or in flight."""
    def probe():
        sub = subscription_of(name, topic_info(name, topic), key)
        return sub if sub["pending"] == 0 and sub["inFlight"] == 0 else False

    return wait_for(name, probe)


def wait_gone(name, observer, sid):
    """Waits until the server has closed socket ``sid`` (it left its own room), polling the
    interop app's ``room-sockets`` from ``observer`` (a client cannot await the server's view of
    its own goodbye). Needed before publishing to an identity that just went offline."""
    def probe():
        ack = call(name, observer, "room-sockets", {"room": sid})
        check(f"{name}: room-sockets ok", isinstance(ack, dict) and ack.get("ok") is True, "ok: True", ack)
        return sid not in ack["sids"]

    return wait_for(name, probe)


_EVENT_PACKET = re.compile(r"^2(\d*)(\[.*)$", re.DOTALL)


def wire_events(log, event):
    """The (data, meta) arguments of every ``event`` packet in a ``wire_log``, in wire order."""
    out = []
    for raw in list(log):
        if isinstance(raw, bytes) and PARSER == "msgpack":
            # socket.io-msgpack-parser: the packet {type, data, nsp, id} is the whole message.
            import msgpack  # only needed (and installed) for the msgpack runs

            packet = msgpack.loads(raw)
            args = packet.get("data") if isinstance(packet, dict) and packet.get("type") == 2 else None
            if args and args[0] == event:
                out.append(args[1:])
            continue
        if not isinstance(raw, str):
            continue
        m = _EVENT_PACKET.match(raw)
        if not m:
            continue
        args = json.loads(m.group(2))
        if args and args[0] == event:
            out.append(args[1:])
    return out
