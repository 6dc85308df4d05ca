"""A small certificate authority for development and tests (``schedd dev``, ``local_cluster()``).

It writes, under one directory (mode 0700, every key 0600):

* ``ca.pem`` / ``ca.key``: an EC P-256 CA (``BasicConstraints(ca=True, path_length=0)``);
* ``node-<id>.pem`` / ``.key`` per node: SAN ``DNS:localhost, IP:127.0.0.1`` plus the node's
  SPIFFE id ``spiffe://schedd/node/<id>``, EKU serverAuth *and* clientAuth (a node serves gRPC
  and Raft and dials its peers' Raft ports);
* client certificates (EKU clientAuth) whose identity is a SPIFFE URI SAN:
  ``spiffe://schedd/admin/<name>`` or ``spiffe://schedd/ns/<namespace>/worker/<name>``.

Production clusters bring certificates from their own PKI (cert-manager, Vault, step-ca); this
module is for a laptop and a CI box, where "it just works with TLS on" beats "it works in
plaintext". Certificates are valid for 30 days (``schedd dev`` renews any that expire within a
day at start), the CA for 10 years.

Failure contract: every function raises ``OSError`` when a file cannot be written; existing
files are reused, never overwritten, unless they are about to expire.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["DevPKI", "Issued", "node_identity", "worker_identity", "admin_identity"]

from schedd.security.roles import TRUST_DOMAIN  # noqa: E402  (one spelling of the domain)

LEAF_DAYS = 30
CA_DAYS = 3650


def node_identity(node_id: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/node/{node_id}"


def worker_identity(name: str, namespace: str = "default") -> str:
    return f"spiffe://{TRUST_DOMAIN}/ns/{namespace}/worker/{name}"


def admin_identity(name: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/admin/{name}"


@dataclass(frozen=True)
class Issued:
    """Paths of one issued certificate and its key (PEM)."""

    cert: str
    key: str


def _write_private(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class DevPKI:
    """The development CA rooted at ``directory``; creates the CA on first use."""

    def __init__(self, directory: str, now: dt.datetime | None = None) -> None:
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        os.chmod(self.directory, 0o700)
        self._now = now
        self.ca_path = os.path.join(self.directory, "ca.pem")
        self._ca_key_path = os.path.join(self.directory, "ca.key")
        if not (os.path.exists(self.ca_path) and os.path.exists(self._ca_key_path)):
            self._make_ca()
        with open(self._ca_key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self._ca_key = key
        with open(self.ca_path, "rb") as f:
            self._ca_cert = x509.load_pem_x509_certificate(f.read())

    def now(self) -> dt.datetime:
        return self._now or dt.datetime.now(dt.UTC)

    def _make_ca(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "schedd development CA")])
        now = self.now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        _write_private(self._ca_key_path, _key_pem(key))
        _write_private(self.ca_path, cert.public_bytes(serialization.Encoding.PEM))

    def _fresh(self, path: str, key_path: str) -> bool:
        """Reuse a certificate only if this CA signed it (every dev CA has the same name, so the
        issuer name alone does not tell a certificate of an earlier CA from one of this CA), its
        key file holds its key, and it is valid for more than a day."""
        try:
            with open(path, "rb") as f:
                cert = x509.load_pem_x509_certificate(f.read())
            with open(key_path, "rb") as f:
                key = serialization.load_pem_private_key(f.read(), password=None)
            cert.verify_directly_issued_by(self._ca_cert)
        except (OSError, ValueError, TypeError, InvalidSignature):
            return False
        if cert.public_key() != key.public_key():
            return False
        return cert.not_valid_after_utc - self.now() > dt.timedelta(days=1)

    def issue(
        self,
        stem: str,
        common_name: str,
        uri: str,
        *,
        server: bool = False,
        hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
    ) -> Issued:
        """Issue (or reuse, while valid for more than a day) ``<stem>.pem``/``<stem>.key``."""
        out = Issued(
            os.path.join(self.directory, f"{stem}.pem"),
            os.path.join(self.directory, f"{stem}.key"),
        )
        if self._fresh(out.cert, out.key):
            return out
        key = ec.generate_private_key(ec.SECP256R1())
        now = self.now()
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri)]
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if server:
            usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()),
                False,
            )
            .sign(self._ca_key, hashes.SHA256())
        )
        _write_private(out.key, _key_pem(key))
        _write_private(out.cert, cert.public_bytes(serialization.Encoding.PEM))
        return out

    def node(self, node_id: str, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> Issued:
        return self.issue(
            f"node-{node_id}", f"node:{node_id}", node_identity(node_id), server=True, hosts=hosts
        )

    def admin(self, name: str = "admin") -> Issued:
        return self.issue(f"admin-{name}", f"admin:{name}", admin_identity(name))

    def worker(self, name: str, namespace: str = "default") -> Issued:
        return self.issue(
            f"worker-{namespace}-{name}",
            f"worker:{namespace}/{name}",
            worker_identity(name, namespace),
        )
