"""TLS end to end with certificates made in the test (trustme): the embedded server serves
TLS only, ``bus.transport.connection.connect`` verifies it, plaintext is refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from bus.errors import ConnectionFailedError
from bus.server import NatsServer, ServerOptions
from bus.settings import Settings
from bus.subjects import Subjects
from bus.testing import nats_server
from bus.transport.connection import connect
from bus.transport.jetstream import ensure_all


class Pki:
    def __init__(self, root: Path) -> None:
        self.ca = trustme.CA()
        server = self.ca.issue_cert("localhost", "127.0.0.1")
        client = self.ca.issue_cert("agent@bus.local")
        self.ca_file = str(root / "ca.pem")
        self.server_cert, self.server_key = str(root / "server.pem"), str(root / "server.key")
        self.client_cert, self.client_key = str(root / "client.pem"), str(root / "client.key")
        self.ca.cert_pem.write_to_path(self.ca_file)
        server.cert_chain_pems[0].write_to_path(self.server_cert)
        server.private_key_pem.write_to_path(self.server_key)
        client.cert_chain_pems[0].write_to_path(self.client_cert)
        client.private_key_pem.write_to_path(self.client_key)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


@pytest.fixture
def tls_server(pki: Pki) -> Iterator[NatsServer]:
    with nats_server(ServerOptions(tls_cert=pki.server_cert, tls_key=pki.server_key)) as srv:
        yield srv


def _settings(url: str, **values: str) -> Settings:
    return Settings(servers=(url,), explicit=True, connect_timeout=3.0).with_overrides(**values)


async def test_verified_tls_works_end_to_end(tls_server: NatsServer, pki: Pki) -> None:
    assert tls_server.url.startswith("tls://localhost:")
    nc = await connect(_settings(tls_server.url, tls_ca=pki.ca_file))
    try:
        buckets = await ensure_all(nc, Subjects())
        js = nc.jetstream()
        await js.publish("bus.task.alpha", b"over tls")
        sub = await js.pull_subscribe("bus.task.alpha", durable="alpha", stream="BUS_TASKS")
        (msg,) = await sub.fetch(1, timeout=5)
        await msg.ack_sync()
        revision = await buckets["runs"].create("run-1", b"x")
        assert revision > 0
        assert msg.data == b"over tls"
        assert nc._server_info.get("tls_required") is True
    finally:
        await nc.close()


async def test_plaintext_is_refused(tls_server: NatsServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_server.port)
    try:
        info = await reader.readline()
        assert json.loads(info.split(b" ", 1)[1])["tls_required"] is True
        writer.write(b'CONNECT {"verbose":false}\r\nPING\r\n')
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 5)
        assert b"PONG" not in answer
        assert b"-ERR" in answer or answer == b""
    finally:
        writer.close()
        await writer.wait_closed()
    url = f"nats://127.0.0.1:{tls_server.port}"
    with pytest.raises(ConnectionFailedError):
        await connect(Settings(servers=(url,), explicit=True, connect_timeout=2.0))


async def test_a_server_signed_by_another_ca_is_refused(tls_server: NatsServer) -> None:
    other = Pki.__new__(Pki)
    other.ca = trustme.CA()
    stranger = Path(tls_server.store_dir) / "other-ca.pem"
    other.ca.cert_pem.write_to_path(str(stranger))
    with pytest.raises(ConnectionFailedError):
        await connect(_settings(tls_server.url, tls_ca=str(stranger)))


async def test_mutual_tls_needs_a_client_certificate(pki: Pki) -> None:
    options = ServerOptions(
        tls_cert=pki.server_cert, tls_key=pki.server_key, tls_ca=pki.ca_file, tls_verify=True
    )
    with nats_server(options) as server:
        with pytest.raises(ConnectionFailedError):
            await connect(_settings(server.url, tls_ca=pki.ca_file))
        nc = await connect(
            _settings(
                server.url, tls_ca=pki.ca_file, tls_cert=pki.client_cert, tls_key=pki.client_key
            )
        )
        try:
            await nc.publish("bus.event.tls", b"ok")
            await nc.flush()
        finally:
            await nc.close()
