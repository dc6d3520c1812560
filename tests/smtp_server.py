"""A real SMTP server on loopback (aiosmtpd) for tests and benchmarks.

It accepts every message, counts connections (one per TCP connection a client opens)
and messages, and keeps what it received (envelope, parsed message, arrival time,
connection number). It can also misbehave like a real server:

- `refuse`: recipient addresses containing one of these strings get `550` at RCPT TO;
- `drop_after=k`: after k accepted messages the next MAIL FROM gets the connection
  closed without a reply (a crash mid-batch, as the client sees it); once only.

In tests:

    with SmtpServer() as smtp:
        smtp.use_for_django(settings)  # EMAIL_* settings pointing at it
        ...
        assert smtp.connections < smtp.message_count

As a fixture:

    @pytest.fixture
    def smtp(settings):
        with SmtpServer() as server:
            yield server.use_for_django(settings)

As a process (benchmarks: keeps the server's work off the sender's interpreter):
`python tests/smtp_server.py [--port N]` prints `READY <port>`; each line `stats` read on
stdin answers a JSON line {"connections", "messages", "recipients"}; EOF stops it.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import logging
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

logging.getLogger("mail.log").setLevel(logging.WARNING)

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    at: float  # time.time() when the DATA was accepted
    started: float  # time.time() when its MAIL FROM arrived (the client began sending it)
    connection: int  # 1-based number of the connection it came on
    raw: bytes = b""
    _parsed: EmailMessage | None = field(default=None, repr=False)

    @property
    def message(self) -> EmailMessage:
        if self._parsed is None:
            self._parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        return self._parsed


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_MAIL(self, smtp, session, envelope, address, mail_options):
        srv = self.server
        with srv.lock:
            drop = srv.drop_after is not None and srv.message_count >= srv.drop_after
            if drop:
                srv.drop_after = None
                srv.drops += 1
        if drop:
            smtp.transport.close()  # no reply: the client sees the connection die
            return "421 4.3.0 closing"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        session.mail_started = time.time()
        return "250 OK"

    async def handle_RCPT(self, smtp, session, envelope, address, rcpt_options):
        if any(word in address for word in self.server.refuse):
            with self.server.lock:
                self.server.refused.append(address)
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp, session, envelope):
        srv = self.server
        with srv.lock:
            srv.message_count += 1
            srv.recipient_count += len(envelope.rcpt_tos)
            if srv.keep_messages:
                srv.messages.append(
                    Received(
                        mail_from=envelope.mail_from,
                        rcpt_tos=list(envelope.rcpt_tos),
                        at=time.time(),
                        started=getattr(session, "mail_started", 0.0),
                        connection=getattr(smtp, "connection_number", 0),
                        raw=envelope.original_content or envelope.content,
                    )
                )
        return "250 2.0.0 accepted"


class _CountingController(Controller):
    def __init__(self, server: SmtpServer, **kwargs: Any) -> None:
        super().__init__(_Handler(server), **kwargs)
        self.owner = server  # (Controller.server is its asyncio server)

    def factory(self):  # called once per TCP connection
        smtp = super().factory()
        with self.owner.lock:
            self.owner.connections += 1
            smtp.connection_number = self.owner.connections
        return smtp


class SmtpServer:
    def __init__(
        self,
        *,
        host: str = HOST,
        port: int | None = None,
        refuse: Iterable[str] = ("refuse",),
        drop_after: int | None = None,
        keep_messages: bool = True,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.refuse = tuple(refuse)
        self.drop_after = drop_after
        self.keep_messages = keep_messages
        self.lock = threading.Lock()
        self.reset()
        # A fixed server name: aiosmtpd would otherwise call socket.getfqdn() per connection.
        self._controller = _CountingController(self, hostname=host, port=self.port, server_hostname="smtp.test")

    def reset(self) -> None:
        """Forget what was received so far (counts too)."""
        self.connections = 0
        self.message_count = 0
        self.recipient_count = 0
        self.drops = 0
        self.messages: list[Received] = []
        self.refused: list[str] = []

    def start(self) -> SmtpServer:
        self._controller.start()
        self.reset()  # start() opens one connection itself to check the server is up
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def django_settings(self) -> dict[str, Any]:
        """Settings that make Django deliver to this server through the project's
        rate-limited backend (Django's test setup swaps EMAIL_BACKEND for locmem)."""
        return {
            "EMAIL_BACKEND": "yesgoddess.emailing.backends.RateLimitedBackend",
            "EMAIL_DELIVERY_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": self.host,
            "EMAIL_PORT": self.port,
            "EMAIL_USE_TLS": False,
            "EMAIL_HOST_USER": "",
            "EMAIL_HOST_PASSWORD": "",
            "EMAIL_TIMEOUT": 10,
        }

    def use_for_django(self, settings: Any) -> SmtpServer:
        """Point Django at this server: `settings` is pytest-django's fixture (restored
        after the test) or django.conf.settings."""
        for name, value in self.django_settings().items():
            setattr(settings, name, value)
        return self

    def worker_env(self) -> dict[str, str]:
        """The same for a worker process (settings come from its environment)."""
        return {"EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend", "EMAIL_HOST": self.host,
                "EMAIL_PORT": str(self.port)}  # fmt: skip

    def received_by(self) -> Counter:
        """How many messages each recipient address got."""
        return Counter(address for message in self.messages for address in message.rcpt_tos)

    def per_second(self) -> Counter:
        """Messages per wall-clock second in which the client began sending them (their
        MAIL FROM arrived): what a sender-side rate limit controls."""
        return Counter(int(message.started) for message in self.messages)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep (and parse nothing of) the messages")
    args = parser.parse_args(argv)
    server = SmtpServer(port=args.port or None, keep_messages=args.keep).start()
    print(f"READY {server.port}", flush=True)
    for line in sys.stdin:
        if line.strip() == "stats":
            with server.lock:
                stats = {
                    "connections": server.connections,
                    "messages": server.message_count,
                    "recipients": server.recipient_count,
                }
            print(json.dumps(stats), flush=True)
        elif line.strip() == "reset":
            with server.lock:
                server.reset()
            print("{}", flush=True)
    server.stop()


if __name__ == "__main__":
    main()
