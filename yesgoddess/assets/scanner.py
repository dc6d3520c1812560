"""Virus scanning through clamd (pyclamd), streamed from a file object.

pyclamd's own `scan_stream` sends 4 KiB chunks with `socket.send` (which may send only
part of a chunk) and gives up on clamd's size-limit reply; this subclass streams large
chunks with `sendall` and turns each outcome into one of three answers: clean,
infected (with the signature names), or an exception saying why there is no verdict.
A file is never reported clean without clamd's own "OK".
"""

from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass, field
from typing import BinaryIO

import pyclamd

CHUNK = 256 * 1024


class ScannerUnavailable(Exception):
    """clamd could not be reached or broke off the scan: retry later."""


class ScanRefused(Exception):
    """clamd answered but will not scan this file (over its size limit, or an error)."""


@dataclass(frozen=True)
class Verdict:
    clean: bool
    threats: list[str] = field(default_factory=list)
    engine: str = ""


class StreamingClamd(pyclamd.ClamdUnixSocket):
    def scan_fileobj(self, fileobj: BinaryIO) -> Verdict:
        try:
            self._init_socket()
            self._send_command("INSTREAM")
            try:
                while chunk := fileobj.read(CHUNK):
                    self.clamd_socket.sendall(struct.pack("!L", len(chunk)) + chunk)
                self.clamd_socket.sendall(struct.pack("!L", 0))
            except (BrokenPipeError, ConnectionResetError):
                pass  # clamd stops reading when it refuses a stream; its reply says why
            reply = self._recv_response()
        except (OSError, pyclamd.ConnectionError) as exc:
            raise ScannerUnavailable(f"clamd is unreachable: {exc}") from exc
        finally:
            with contextlib.suppress(AttributeError, OSError):
                self._close_socket()
        return parse_reply(reply)


def parse_reply(reply: str) -> Verdict:
    if not reply:
        raise ScannerUnavailable("clamd closed the connection without a verdict")
    if "size limit exceeded" in reply:
        raise ScanRefused(f"The file is larger than the scanner accepts (clamd: {reply}).")
    if reply.endswith(" OK"):
        return Verdict(clean=True)
    if reply.endswith(" FOUND"):
        threats = [line.split(": ", 1)[1].removesuffix(" FOUND") for line in reply.splitlines() if ": " in line]
        return Verdict(clean=False, threats=threats)
    raise ScanRefused(f"clamd could not scan the file: {reply}")


def scan(fileobj: BinaryIO, socket_path: str, timeout: float = 120) -> Verdict:
    """Stream `fileobj` through the clamd listening on `socket_path`."""
    try:
        client = StreamingClamd(filename=socket_path, timeout=timeout)
        engine = client.version()
    except (TimeoutError, OSError, pyclamd.ConnectionError) as exc:
        raise ScannerUnavailable(f"clamd is unreachable at {socket_path}: {exc}") from exc
    verdict = client.scan_fileobj(fileobj)
    return Verdict(clean=verdict.clean, threats=verdict.threats, engine=engine)


def is_answering(socket_path: str, timeout: float = 5) -> bool:
    """Whether clamd answers on `socket_path` right now (its VERSION command)."""
    try:
        return bool(StreamingClamd(filename=socket_path, timeout=timeout).version())
    except (TimeoutError, OSError, pyclamd.ConnectionError):
        return False
