"""``identity.principal`` against a real gRPC server with TLS client certificates (in-process,
on loopback): the auth context gRPC hands a servicer carries what the function reads."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from schedd.server.identity import ANONYMOUS, principal

_NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def _cert(
    cn: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    sans: list[x509.GeneralName],
    ca: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOW - datetime.timedelta(days=1))
        .not_valid_after(_NOW + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    return cert, key


def _pem(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[bytes, bytes]:
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


@pytest.fixture(scope="module")
def server() -> Iterator[
    tuple[str, bytes, tuple[x509.Certificate, ec.EllipticCurvePrivateKey], str]
]:
    ca = _cert("test-ca", None, [], ca=True)
    srv = _cert(
        "localhost",
        ca,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    ca_pem = _pem(*ca)[0]

    def who(_: bytes, context: grpc.ServicerContext) -> bytes:
        return principal(context).encode()

    handler = grpc.method_handlers_generic_handler(
        "test.Identity",
        {"Who": grpc.unary_unary_rpc_method_handler(who, lambda b: b, lambda b: b)},
    )
    s = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    s.add_generic_rpc_handlers((handler,))
    creds = grpc.ssl_server_credentials(
        [_pem(*srv)[::-1]], root_certificates=ca_pem, require_client_auth=True
    )
    port = s.add_secure_port("127.0.0.1:0", creds)
    plain = s.add_insecure_port("127.0.0.1:0")
    s.start()
    try:
        yield f"localhost:{port}", ca_pem, ca, f"127.0.0.1:{plain}"
    finally:
        s.stop(None)


def _who(addr: str, ca_pem: bytes, client: tuple[bytes, bytes] | None) -> str:
    if client is None:
        channel = grpc.insecure_channel(addr)
    else:
        creds = grpc.ssl_channel_credentials(
            root_certificates=ca_pem, private_key=client[1], certificate_chain=client[0]
        )
        channel = grpc.secure_channel(addr, creds)
    with channel:
        call = channel.unary_unary("/test.Identity/Who")
        return bytes(call(b"", timeout=10)).decode()


def test_a_spiffe_id_in_the_client_certificate_is_the_principal(server) -> None:  # type: ignore[no-untyped-def]
    addr, ca_pem, ca, _ = server
    spiffe = "spiffe://prod.example/worker/billing"
    client = _cert("billing", ca, [x509.UniformResourceIdentifier(spiffe)])
    assert _who(addr, ca_pem, _pem(*client)) == spiffe


def test_else_the_common_name_and_without_a_certificate_anonymous(server) -> None:  # type: ignore[no-untyped-def]
    addr, ca_pem, ca, plain = server
    client = _cert("billing", ca, [x509.DNSName("billing.example")])
    assert _who(addr, ca_pem, _pem(*client)) == "cn:billing"
    assert _who(plain, ca_pem, None) == ANONYMOUS
