"""Redis servers of a test's own on loopback ports: plain, TLS, replicas and sentinels.

The machine's shared Redis (6379) is never touched: each server here is a child
`redis-server` process on a free port, without persistence, stopped by the test.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from redis import Redis

from .smtp_server import free_port

HOST = "127.0.0.1"


class RedisServer:
    """`redis-server` with `args`, on a free port; `sentinel=True` runs it as a sentinel
    (which needs a writable config file of its own). "{port}" in `args` is the port."""

    def __init__(self, workdir: Path, *args: str, sentinel: bool = False) -> None:
        self.port = free_port()
        args = tuple(arg.replace("{port}", str(self.port)) for arg in args)
        self.workdir = workdir / f"redis-{self.port}"
        self.workdir.mkdir(parents=True)
        command = ["redis-server"]
        if sentinel:
            config = self.workdir / "sentinel.conf"
            config.write_text("".join(f"{line}\n" for line in args))
            command += [str(config), "--sentinel", "--port", str(self.port)]
        else:
            command += ["--port", str(self.port), *args]
        command += ["--bind", HOST, "--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def client(self, **options: object) -> Redis:
        return Redis(host=HOST, port=self.port, socket_timeout=5, **options)

    def wait_ready(self, client: Redis | None = None, timeout: float = 15) -> RedisServer:
        client = client or self.client()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server on {self.port} exited: {self.process.stdout.read()[-2000:]}")
            try:
                client.ping()
                return self
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def make_certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, with openssl."""
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    run(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.crt",
    )  # fmt: skip
    for name, extension in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        run(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
        )
        (folder / f"{name}.ext").write_text(extension + "\n")
        run(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext",
        )  # fmt: skip
    return {name: folder / name for name in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}
