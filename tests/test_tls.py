"""wss://: --certfile/--keyfile, with a CA this test makes (openssl), and
clients that verify the server's certificate against it."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess

import pytest
from websockets.asyncio.client import connect

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def _run(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, and a certificate for 127.0.0.1 / localhost signed by it."""
    d = tmp_path_factory.mktemp("pki")
    _run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=wsup test CA",
         "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    _run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
         "-out", "server.csr", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem", cwd=d)
    _run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=another CA",
         "-keyout", "other.key", "-out", "other.pem", cwd=d)
    return d


def client_context(cafile):
    ctx = ssl.create_default_context(cafile=str(cafile))   # verifies the chain and the host name
    return ctx


def test_wss_echo_plain_and_compressed_with_a_verified_certificate(make_server, pki):
    server = make_server(workers=2, certfile=str(pki / "server.pem"), keyfile=str(pki / "server.key"))
    url = f"wss://127.0.0.1:{server.port}/"

    async def run():
        ctx = client_context(pki / "ca.pem")
        for compression in ("deflate", None):
            async with connect(url, ssl=ctx, compression=compression, max_size=None) as ws:
                for n in (5, 70_000, 1 << 20):      # several TLS records, and more than one read
                    msg = ("tls " * n)[:n]
                    await ws.send(msg)
                    assert await ws.recv() == msg
        # and many at once, spread over both workers
        async def one(i):
            async with connect(url, ssl=ctx) as ws:
                await ws.send(f"hello {i}")
                assert await ws.recv() == f"hello {i}"
        await asyncio.gather(*(one(i) for i in range(20)))
    asyncio.run(run())
    server.stop()
    closed = server.log.events("connection.closed")
    assert len(closed) == 22 and all(r["code"] == 1000 for r in closed)


def test_a_client_that_does_not_trust_the_ca_refuses_and_the_server_goes_on(make_server, pki):
    server = make_server(workers=1, certfile=str(pki / "server.pem"), keyfile=str(pki / "server.key"))
    url = f"wss://127.0.0.1:{server.port}/"

    async def run():
        with pytest.raises(ssl.SSLCertVerificationError):
            async with connect(url, ssl=client_context(pki / "other.pem"), open_timeout=5):
                pass
        with pytest.raises(Exception):   # plain ws:// to a wss:// port: no upgrade
            async with connect(f"ws://127.0.0.1:{server.port}/", open_timeout=5):
                pass
        async with connect(url, ssl=client_context(pki / "ca.pem")) as ws:   # still serving
            await ws.send("ok")
            assert await ws.recv() == "ok"
    asyncio.run(run())


def test_tls_options_are_checked(pki):
    from wscore.config import ServerConfig
    with pytest.raises(ValueError, match="needs --certfile"):
        ServerConfig(keyfile=str(pki / "server.key")).check()
    with pytest.raises(ValueError, match="workers must be >= 1"):
        ServerConfig(certfile=str(pki / "server.pem"), workers=0).check()
