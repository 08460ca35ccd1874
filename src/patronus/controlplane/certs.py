"""The PKI a throwaway control plane needs, made with ``cryptography``.

One CA signs the API server's serving certificate (for 127.0.0.1, localhost, the in-cluster names and any
address it is bound to) and the admin's client certificate (O=system:masters); a separate RSA key signs
service-account tokens. The CA key is kept beside them, so that a node's kubelet can get a client
certificate (``issue_client_cert``) once the control plane runs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=7)
_CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class PkiFiles:
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    service_account_key: Path
    service_account_pub: Path


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + _VALIDITY)
    )


# The names in-cluster clients use for the API server (the `kubernetes` Service's DNS names).
_IN_CLUSTER_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


def make_pki(
    directory: Path, admin_user: str = "patronus-admin", *, serving_ips: Sequence[str] = ()
) -> PkiFiles:
    """Create the CA, serving, admin and service-account keys under ``directory``.

    ``serving_ips`` are added to the serving certificate beside 127.0.0.1: the address the API server is
    bound to and the `kubernetes` Service's cluster IP, when pods are to reach it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _make_ca()
    serving_key, serving_cert = _make_serving_cert(ca_key, ca_cert.subject, serving_ips)
    admin_key, admin_cert = _make_client_cert(ca_key, ca_cert.subject, _name(admin_user, "system:masters"))
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    files = PkiFiles(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        service_account_key=directory / "sa.key",
        service_account_pub=directory / "sa.pub",
    )
    _write_cert(files.ca_cert, ca_cert)
    _write_key(files.ca_key, ca_key)
    _write_cert(files.serving_cert, serving_cert)
    _write_key(files.serving_key, serving_key)
    _write_cert(files.admin_cert, admin_cert)
    _write_key(files.admin_key, admin_key)
    _write_key(files.service_account_key, sa_key)
    files.service_account_pub.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return files


def _make_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA that may sign certificates (and CRLs), nothing else."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("patronus-test-ca")
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return ca_key, ca_cert


def _make_serving_cert(
    ca_key: ec.EllipticCurvePrivateKey, ca_name: x509.Name, serving_ips: Sequence[str]
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """kube-apiserver's serving certificate: localhost, the in-cluster names, 127.0.0.1, ``serving_ips``."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(_name("kube-apiserver"), ca_name, key.public_key())
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    *(x509.DNSName(name) for name in _IN_CLUSTER_NAMES),
                    *(
                        x509.IPAddress(ipaddress.ip_address(ip))
                        for ip in dict.fromkeys(["127.0.0.1", *serving_ips])
                    ),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _make_client_cert(
    ca_key: ec.EllipticCurvePrivateKey, ca_name: x509.Name, subject: x509.Name
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A client certificate for ``subject`` (CN is the user, O the group), signed by the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(subject, ca_name, key.public_key())
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def issue_client_cert(
    pki: PkiFiles, directory: Path, name: str, common_name: str, organization: str | None = None
) -> tuple[Path, Path]:
    """A client certificate signed by the cluster CA: ``(cert, key)`` as ``<name>.crt`` and ``<name>.key``."""
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{pki.ca_key} is not the EC key make_pki writes")
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    key, cert = _make_client_cert(ca_key, ca_cert.subject, _name(common_name, organization))
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    _write_cert(cert_path, cert)
    _write_key(key_path, key)
    return cert_path, key_path
