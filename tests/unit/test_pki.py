"""The development CA (schedd.security.pki.DevPKI) reuses a certificate only when it is really
its own: signed by this CA (not merely issued under the same name), with its key, and valid."""

from __future__ import annotations

import shutil
from pathlib import Path

from cryptography import x509

from schedd.security.pki import DevPKI


def _serial(path: str) -> int:
    return x509.load_pem_x509_certificate(Path(path).read_bytes()).serial_number


def test_a_valid_certificate_of_this_ca_is_reused(tmp_path: Path) -> None:
    pki = DevPKI(str(tmp_path / "a"))
    first = _serial(pki.node("n1").cert)
    assert _serial(pki.node("n1").cert) == first


def test_a_certificate_of_another_ca_with_the_same_name_is_replaced(tmp_path: Path) -> None:
    other = DevPKI(str(tmp_path / "other")).node("n1")
    theirs = _serial(other.cert)
    pki = DevPKI(str(tmp_path / "mine"))
    shutil.copy(other.cert, tmp_path / "mine" / "node-n1.pem")
    shutil.copy(other.key, tmp_path / "mine" / "node-n1.key")
    issued = pki.node("n1")
    assert Path(issued.cert).name == "node-n1.pem"  # the stem the copy took over
    assert _serial(issued.cert) != theirs
    cert = x509.load_pem_x509_certificate(Path(issued.cert).read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(Path(pki.ca_path).read_bytes()))


def test_a_certificate_whose_key_file_holds_another_key_is_replaced(tmp_path: Path) -> None:
    pki = DevPKI(str(tmp_path))
    n1, n2 = pki.node("n1"), pki.node("n2")
    before = _serial(n1.cert)
    shutil.copy(n2.key, n1.key)
    assert _serial(pki.node("n1").cert) != before
