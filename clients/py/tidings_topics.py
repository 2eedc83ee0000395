"""Durable topics of a tidings server (docs/PROTOCOL.md) over an unmodified python-socketio
``socketio.Client``: the Python twin of clients/js. Not published to PyPI from this
repository: copy the file.

    sio = socketio.Client()
    topics = Topics(sio)
    topics.subscribe("pickup", handle_order, group="drivers")   # before sio.connect(...)
    sio.connect(url, auth={"clientId": "driver-1"})
    published = topics.publish("vendor.store-a", "delivered", {"order": "A1"}, key="A1:delivered")

A handler ``handler(data, meta, event)`` that returns acknowledges the delivery; one that raises
requeues it (redelivered later with backoff, ``meta["attempt"]`` + 1). python-socketio runs each
event in a thread of its own, so handlers of one subscription may run at the same time.
"""

from dataclasses import dataclass

import socketio

__all__ = ["Topics", "TidingsError", "Published", "ERROR_CODES"]

#: Every ``code`` a tidings server answers with, and ``timeout`` when it does not answer.
ERROR_CODES = frozenset({
    "bad_request", "unauthorized", "token_expired", "forbidden", "limit_exceeded", "queue_full",
    "not_found", "request_timeout", "payload_too_large", "rate_limited", "identity_required",
    "store_unavailable", "timeout", "internal", "too_many_connections", "store_full",
})


class TidingsError(Exception):
    """A refusal from the server (``{ok: false, error: {code, message}}``), or no answer."""

    def __init__(self, code, message, request):
        super().__init__(f"{request}: {code}: {message}")
        self.code = code
        self.detail = message
        self.request = request


@dataclass(frozen=True)
class Published:
    id: str
    offset: int
    duplicate: bool


class Topics:
    """Publishes to and subscribes to durable topics through ``sio``."""

    def __init__(self, sio: socketio.Client, timeout: float = 10.0):
        self._sio = sio
        self._timeout = timeout
        self._handlers = {}  # (topic, group or None) -> handler
        self._confirmed = set()
        sio.on("*", self._on_event)
        sio.on("connect", self._on_connect)

    def publish(self, topic, event, data, key=None) -> Published:
        """Publishes ``data`` as ``event`` to ``topic``; returns once the server stored it.

        ``data`` may hold ``bytes`` anywhere: subscribers receive them as binary."""
        payload = {"topic": topic, "event": event, "data": data}
        if key is not None:
            payload["key"] = key
        ack = self._request("publish", payload)
        return Published(ack["id"], ack["offset"], ack["duplicate"])

    def subscribe(self, topic, handler, group=None, start=None):
        """Hands every delivery of ``topic`` (as a member of ``group``) to ``handler``.

        Before ``sio.connect``: registered now, subscribed on connecting (and again after every
        reconnect), so the backlog that arrives on connecting is handled. Once connected: the
        subscription is made at once and its ``pending`` count returned. ``start`` is where a
        new subscription begins: ``"new"`` (default), ``"earliest"`` or an offset.
        """
        self._handlers[(topic, group)] = (handler, start)
        if self._sio.connected:
            return self._subscribe(topic, group, start)
        return None

    def unsubscribe(self, topic, group=None):
        payload = {"topic": topic}
        if group is not None:
            payload["group"] = group
        self._request("unsubscribe", payload)
        self._handlers.pop((topic, group), None)

    def _subscribe(self, topic, group, start):
        payload = {"topic": topic}
        if group is not None:
            payload["group"] = group
        if start is not None:
            payload["from"] = start
        return self._request("subscribe", payload)["pending"]

    def _request(self, name, payload):
        try:
            ack = self._sio.call(name, payload, timeout=self._timeout)
        except socketio.exceptions.TimeoutError:
            raise TidingsError("timeout", f"no answer within {self._timeout:g} s", name) from None
        if not isinstance(ack, dict) or ack.get("ok") is not True:
            error = ack.get("error", {}) if isinstance(ack, dict) else {}
            raise TidingsError(error.get("code", "internal"), error.get("message", "malformed answer"), name)
        return ack

    def _on_connect(self):
        # In a thread: `call` cannot wait for its answer inside the connect handler.
        def subscribe_all():
            for (topic, group), (_, start) in list(self._handlers.items()):
                self._subscribe(topic, group, start)

        self._sio.start_background_task(subscribe_all)

    def _on_event(self, event, *args):
        if len(args) < 2 or not isinstance(args[1], dict) or "topic" not in args[1]:
            return None
        data, meta = args[0], args[1]
        entry = self._handlers.get((meta["topic"], meta.get("group")))
        if entry is None:
            return None  # not ours: unacknowledged, it comes back after the ack timeout
        try:
            entry[0](data, meta, event)
        except Exception:  # noqa: BLE001 — any failure of the handler requeues
            return {"requeue": True}
        return None
