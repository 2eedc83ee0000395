"""Shared helpers for the python-socketio (sync client) scenarios.

Conventions every scenario follows:
- ``TIDINGS_URL`` (required) is the server origin, e.g. http://127.0.0.1:45123.
- ``TRANSPORT`` is ``websocket``, ``polling`` or ``upgrade`` (polling first, then the client
  upgrades; the default).
- ``PARSER`` is ``default`` (the default) or ``msgpack``: every client made by ``client()``
  then uses python-socketio's msgpack serializer (PyPI ``msgpack``), for a server started with
  ``--parser msgpack``.
- A watchdog thread fails the script with ``os._exit(1)`` if it has not finished in time
  (``TIDINGS_TEST_TIMEOUT_MS`` overrides the per-script default).
- Every assertion goes through ``check*``, which counts it. A scenario declares how many checks
  it runs at least (``run(main, checks=N)``); ``done()`` fails unless that many ran, then
  disconnects every client, prints ``ok: M checks (at least N declared)`` and exits 0. The Rust
  runners require that line. A failed check prints ``FAIL <check>: expected ..., actual ...``
  to stderr and exits 1.

python-socketio runs every received event handler in a thread of its own, so handlers may run
out of order; scenarios that assert ordering record the wire order with ``wire_log``.
"""

import json
import os
import queue
import random
import string
import sys
import threading
import time

import socketio

SCRIPT = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "scenario"
URL = os.environ.get("TIDINGS_URL", "").rstrip("/")
TRANSPORT = os.environ.get("TRANSPORT") or "upgrade"
WAIT_S = 5.0
PARSER = os.environ.get("PARSER") or "default"

_TRANSPORTS = {
    "websocket": ["websocket"],
    "polling": ["polling"],
    "upgrade": ["polling", "websocket"],
}

_checks = 0
# The number of checks the scenario declares it runs at least (``run``'s ``checks``).
_declared = 0
_clients = []
# The last step the scenario began (a check, a call, a connect, a leave), for the watchdog's
# message: a wait that never completes names where it hung.
_last_step = "start"
_lock = threading.Lock()


def _show(value, limit=400):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def fail(name, detail):
    """Fails the scenario at once: prints the check and the mismatch to stderr, exits 1."""
    sys.stderr.write(f"{SCRIPT} [{TRANSPORT}]: FAIL {name}: {detail}\n")
    sys.stderr.flush()
    os._exit(1)


if not URL:
    fail("setup", "env TIDINGS_URL is required (e.g. http://127.0.0.1:3000)")
if TRANSPORT not in _TRANSPORTS:
    fail("setup", f"TRANSPORT must be websocket|polling|upgrade, got {TRANSPORT!r}")
TRANSPORTS = _TRANSPORTS[TRANSPORT]


# Set in the thread running ``as_one_check``'s function: the checks made there still fail the
# scenario but are not counted (thread-local, so checks made meanwhile by event handlers still
# count).
_uncounted = threading.local()


def check(name, cond, expected, actual):
    """Counts one check; fails with expected/actual unless ``cond`` holds."""
    global _checks, _last_step
    _last_step = name
    if not getattr(_uncounted, "active", False):
        with _lock:
            _checks += 1
    if not cond:
        fail(name, f"expected {expected}, actual {_show(actual)}")


def check_eq(name, actual, expected):
    """Structural equality (dict key order ignored; bytes compare by content; 1 == 1.0)."""
    check(name, actual == expected, _show(expected), actual)


def check_json(name, actual, expected):
    """Equality of the JSON text: also pins key order and int vs float."""
    a = json.dumps(actual, ensure_ascii=False)
    e = json.dumps(expected, ensure_ascii=False)
    check(name, a == e, f"JSON {e}", a)


def check_error(name, ack, code):
    """Checks an ack of the form {ok: False, error: {code, message}} with a non-empty message."""
    check(f"{name}: ok is false", isinstance(ack, dict) and ack.get("ok") is False, "ok: False", ack)
    err = ack.get("error") or {}
    check(f"{name}: error.code", err.get("code") == code, repr(code), err)
    msg = err.get("message")
    check(f"{name}: error.message is a non-empty string", isinstance(msg, str) and msg != "",
          "a non-empty string", msg)


def watchdog(seconds=20.0):
    """Starts the global watchdog: the script fails if it is still running after ``seconds``."""
    ms = os.environ.get("TIDINGS_TEST_TIMEOUT_MS")
    limit = int(ms) / 1000.0 if ms else seconds

    def expire():
        fail("watchdog", f"scenario still running after {limit:g} s (a wait above never completed; "
             f"the last step begun: {_last_step!r})")

    timer = threading.Timer(limit, expire)
    timer.daemon = True
    timer.start()


def as_one_check(name, fn):
    """Calls ``fn()`` and returns its result, counting it as the one check ``name``: the checks
    it makes still fail the scenario but are not counted. For checks whose number depends on
    timing or on choices the server makes (polls, loops over deliveries that may number more or
    fewer), so that the count a scenario declares stays exact."""
    outer = getattr(_uncounted, "active", False)
    _uncounted.active = True
    try:
        result = fn()
    finally:
        _uncounted.active = outer
    check(name, True, "", None)
    return result


def poll(name, probe, tries=150, every_s=0.02):
    """Polls ``probe`` (returns a truthy value once the awaited server state is reached) at most
    ``tries`` times, ``every_s`` apart, and returns that value; fails ``name`` with the last value
    if it never holds. Only for server state no event announces. One check (``as_one_check``),
    however many probes it took."""

    def attempts():
        last = None
        for _ in range(tries):
            last = probe()
            if last:
                return last
            time.sleep(every_s)
        fail(name, f"expected the server state within {tries} polls {every_s * 1000:g} ms apart, "
                   f"actual {_show(last)}")

    return as_one_check(name, attempts)


def uniq(name):
    """A room or event name unique to this run (letters and digits after the prefix)."""
    return name + "-" + "".join(random.choices(string.ascii_lowercase + string.digits, k=8))


class Inbox:
    """Queues the arguments of every received event, per event name, for one namespace."""

    def __init__(self, sio, namespace):
        self.sio = sio
        self.namespace = namespace
        self.queues = {}

    def listen(self, event, reply=None):
        """Starts queueing ``event``; ``reply`` (args -> ack value) answers acks if given."""
        q = self.queues.setdefault(event, queue.Queue())

        def handler(*args):
            q.put(args)
            return reply(*args) if reply else None

        self.sio.on(event, handler, namespace=self.namespace)
        return self

    def get(self, name, event, timeout=WAIT_S):
        """The argument tuple of the next ``event``; fails the check ``name`` after ``timeout``."""
        try:
            return self.queues[event].get(timeout=timeout)
        except queue.Empty:
            fail(name, f"expected event {event!r} within {timeout:g} s, actual: none")

    def drain(self, event):
        """Everything queued for ``event`` so far, removed from the queue."""
        out = []
        q = self.queues[event]
        while True:
            try:
                out.append(q.get_nowait())
            except queue.Empty:
                return out


def client(**kwargs):
    """A ``socketio.Client`` that does not reconnect, registered for cleanup in ``done()``."""
    if PARSER == "msgpack":
        kwargs.setdefault("serializer", "msgpack")
    sio = socketio.Client(reconnection=False, **kwargs)
    _clients.append(sio)
    return sio


def connect(name, namespace="/", auth=None, listen=(), transports=None):
    """Connects a new client to ``namespace`` and waits for ``welcome``.

    Returns ``(sio, inbox, welcome)``; ``listen`` names events to queue from the start.
    """
    global _last_step
    _last_step = f"{name}: connect"
    sio = client()
    inbox = Inbox(sio, namespace).listen("welcome")
    for event in listen:
        inbox.listen(event)
    fail_on_disconnect(sio, namespace)
    try:
        sio.connect(URL, namespaces=[namespace], auth=auth, transports=transports or TRANSPORTS,
                    wait_timeout=WAIT_S)
    except socketio.exceptions.ConnectionError as exc:
        fail(name, f"expected to connect to {namespace}, actual ConnectionError: {exc}")
    (welcome,) = inbox.get(f"{name}: welcome", "welcome")
    return sio, inbox, welcome


def fail_on_disconnect(sio, namespace="/"):
    """Fails at once if ``namespace`` is disconnected by anything but the client itself.

    Scenarios that expect a server-side disconnect register their own ``disconnect`` handler,
    which replaces this one.
    """

    def handler(reason=None):
        if reason != socketio.Client.reason.CLIENT_DISCONNECT:
            fail("connection", f"expected {namespace} to stay connected, actual disconnect: {reason}")

    sio.on("disconnect", handler, namespace=namespace)


def call(name, sio, event, data=None, namespace="/", timeout=WAIT_S):
    """Emits with an ack and returns the ack (one value, or a tuple for several arguments)."""
    global _last_step
    _last_step = f"{name}: call {event!r}"
    try:
        return sio.call(event, data, namespace=namespace, timeout=timeout)
    except socketio.exceptions.TimeoutError:
        fail(name, f"expected an ack for {event!r} within {timeout:g} s, actual: none")
    except socketio.exceptions.SocketIOError as exc:
        fail(name, f"expected an ack for {event!r}, actual {type(exc).__name__}: {exc}")


def call_ok(name, sio, event, data=None, namespace="/"):
    """``call`` and check the ack has ok: True; returns the ack."""
    ack = call(name, sio, event, data, namespace)
    check(f"{name}: ok", isinstance(ack, dict) and ack.get("ok") is True, "ok: True", ack)
    return ack


def round_trip(name, sio, namespace="/"):
    """One ack round trip; afterwards everything the server emitted earlier has arrived."""
    check_eq(name, call(name, sio, "echo-ack", "sync", namespace), "sync")


def wire_log(sio):
    """Records the Engine.IO message payloads in the order the client reads them off the wire.

    Handlers run in threads of their own, so only the read loop sees the true order. This wraps
    python-engineio's ``Client._receive_packet`` (private, but stable across engineio 4.x).
    """
    eio = sio.eio
    original = getattr(eio, "_receive_packet", None)
    if original is None:
        fail("wire_log", "python-engineio has no Client._receive_packet; update common.wire_log")
    log = []

    def receive(pkt):
        log.append(pkt.data)
        return original(pkt)

    eio._receive_packet = receive
    return log


def leave(sio):
    """Disconnects ``sio`` in a way the server sees at once.

    python-engineio's polling write loop re-checks ``state == 'connected'`` after each POST, so
    a ``disconnect()`` made while a POST is still in flight (e.g. right after a ``call`` whose
    ack came back on the long-poll GET before the POST's response) drops the queued DISCONNECT
    and CLOSE packets, and the server only notices at the heartbeat timeout. Its send queue
    counts ``task_done`` per sent packet, so waiting for ``queue.join()`` first (bounded by the
    engine's request timeout) leaves the write loop idle in ``queue.get``.
    """
    global _last_step
    _last_step = f"leave (disconnect of {sio.get_sid()!r})"
    if sio.eio.state == "connected":
        idle = threading.Thread(target=sio.eio.queue.join, daemon=True)
        idle.start()
        idle.join(WAIT_S)
    sio.disconnect()


def done():
    """Fails unless the declared number of checks ran; else disconnects every client, prints the
    result line and exits 0."""
    if _declared < 1:
        fail("checks", "the scenario declares no number of checks (run(main, checks=N))")
    if _checks < _declared:
        fail("checks", f"expected at least {_declared} checks (declared), actual {_checks}: "
                       "the scenario ended early")
    for sio in _clients:
        try:
            leave(sio)
        except Exception as exc:  # noqa: BLE001 - a failed goodbye must not hide the result
            sys.stderr.write(f"{SCRIPT}: warning: disconnect failed: {exc}\n")
    sys.stdout.write(f"ok: {_checks} checks (at least {_declared} declared)\n")
    sys.stdout.flush()
    os._exit(0)


def run(main, seconds=20.0, checks=None):
    """Runs a scenario that runs at least ``checks`` checks: starts the watchdog, calls
    ``main()``, then ``done()``.

    An exception fails the script (exit 1) instead of leaving clients connected.
    """
    global _declared
    if not isinstance(checks, int) or isinstance(checks, bool) or checks < 1:
        fail("setup", f"run(main, checks=N) must declare the number of checks (N >= 1), got {checks!r}")
    _declared = checks
    watchdog(seconds)
    try:
        main()
    except SystemExit:
        raise
    except BaseException:  # noqa: BLE001 - report anything, then exit 1
        import traceback

        fail("uncaught error", traceback.format_exc())
    done()
