"""`tidings serve --tls-cert/--tls-key` with python-socketio over https:// (polling) and
wss:// (websocket), trusting the test CA (env TIDINGS_CA) through a requests session: the
certificate is verified, not skipped. With TIDINGS_X509_STRICT set, also a handshake with
``VERIFY_X509_STRICT``, which Python 3.13 turns on by default (a certificate must then follow
RFC 5280 more closely: critical CA basic constraints, key identifiers)."""

import os
import socket
import ssl
import urllib.parse

import requests
import socketio

import common
from common import check, check_eq, fail, WAIT_S


def connect(verify):
    session = requests.Session()
    session.verify = verify
    # Else requests prefers REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the environment.
    session.trust_env = False
    sio = common.client(http_session=session)
    common.fail_on_disconnect(sio)
    sio.connect(common.URL, transports=common.TRANSPORTS, wait_timeout=WAIT_S)
    return sio


def main():
    check("url is https", common.URL.startswith("https://"), "an https:// URL", common.URL)
    ca = os.environ["TIDINGS_CA"]
    room = common.uniq("room")
    try:
        a, b = connect(ca), connect(ca)
    except Exception as exc:  # noqa: BLE001
        fail("connect", f"expected to connect over TLS, actual {exc}")
    inbox = common.Inbox(b, "/").listen("news")
    for name, sio in (("a", a), ("b", b)):
        check_eq(f"{name} join", common.call(f"{name} join", sio, "join", {"room": room}), {"ok": True})
    ack = common.call("broadcast", a, "broadcast", {"room": room, "event": "news", "data": {"tls": True, "b": b"\x00\xff"}})
    check_eq("broadcast ack", ack, {"ok": True, "recipients": 1})
    (data,) = inbox.get("b receives news", "news")
    check_eq("news data", data, {"tls": True, "b": b"\x00\xff"})
    if os.environ.get("TIDINGS_X509_STRICT"):
        url = urllib.parse.urlsplit(common.URL)
        context = ssl.create_default_context(cafile=ca)
        context.verify_flags |= ssl.VERIFY_X509_STRICT
        try:
            with socket.create_connection((url.hostname, url.port), timeout=WAIT_S) as raw:
                with context.wrap_socket(raw, server_hostname=url.hostname) as tls:
                    version = tls.version()
        except ssl.SSLError as exc:
            version = f"{type(exc).__name__}: {exc}"
        check("strict X.509 verification", version in ("TLSv1.3", "TLSv1.2"), "a TLS version", version)
    # Without the CA (the system's roots only), the certificate is refused, on every transport
    # (any other connection error would prove nothing about verification).
    try:
        connect(True)
        fail("connect without the CA", "expected a certificate error, actual connected")
    except socketio.exceptions.ConnectionError as exc:
        causes = chain(exc)
        check("certificate error without the CA",
              any("CERTIFICATE_VERIFY_FAILED" in text for text in causes),
              "[SSL: CERTIFICATE_VERIFY_FAILED] in the error or its causes", causes)


def chain(exc):
    """The error and its causes, as text. Polling (requests) names the certificate error in the
    message; the WebSocket transport raises "Connection error" while handling the
    ``ssl.SSLCertVerificationError``, which stays its ``__context__``."""
    texts = []
    while exc is not None and len(texts) < 10:
        texts.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return texts


common.run(main, checks=6)
