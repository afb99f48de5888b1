"""Certificates and keys for the local control plane, made with the `cryptography` package (ECDSA P-256).

One CA signs everything: the apiserver's serving certificate and the client certificates whose subject is the
Kubernetes identity (CN = user, O = group).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from mmft_localcluster.gke_nodes import REAL_NODE_NAME

VALIDITY = datetime.timedelta(days=30)

APISERVER_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
# The first address of the service range (the `kubernetes` Service) as well as loopback.
APISERVER_IPS = ("127.0.0.1", "10.96.0.1")


@dataclass(frozen=True)
class ClientIdentity:
    file_stem: str
    user: str
    groups: tuple[str, ...] = ()


ADMIN = ClientIdentity("admin", "mmft-admin", ("system:masters",))
CONTROLLER_MANAGER = ClientIdentity("controller-manager", "system:kube-controller-manager")
SCHEDULER = ClientIdentity("scheduler", "system:kube-scheduler")
# The simulated parts (kwok playing kubelets, the stand-in volume provisioner) get their own names so that the
# audit log tells their calls apart from the user's.
KWOK = ClientIdentity("kwok", "mmft-simulated-kubelet", ("system:masters",))
PROVISIONER = ClientIdentity("provisioner", "mmft-simulated-provisioner", ("system:masters",))
VOLUME_SIMULATOR = ClientIdentity("volume-simulator", "mmft-simulated-volumes", ("system:masters",))
# The real node's kubelet (the Node authorizer and NodeRestriction admission key on this name and group) and its
# kube-proxy (bound to the built-in system:node-proxier ClusterRole by name).
REAL_NODE_KUBELET = ClientIdentity("real-node-kubelet", f"system:node:{REAL_NODE_NAME}", ("system:nodes",))
KUBE_PROXY = ClientIdentity("kube-proxy", "system:kube-proxy")
# The API server's identity towards kubelets (logs, exec, port-forward), authorised by the kubelet's webhook.
APISERVER_KUBELET_CLIENT = ClientIdentity(
    "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)
)
CLIENT_IDENTITIES = (
    ADMIN,
    CONTROLLER_MANAGER,
    SCHEDULER,
    KWOK,
    PROVISIONER,
    VOLUME_SIMULATOR,
    REAL_NODE_KUBELET,
    KUBE_PROXY,
    APISERVER_KUBELET_CLIENT,
)


@dataclass(frozen=True)
class PkiPaths:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def apiserver_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def service_account_key(self) -> Path:
        return self.directory / "service-account.key"

    @property
    def service_account_public_key(self) -> Path:
        return self.directory / "service-account.pub"

    def client_cert(self, identity: ClientIdentity) -> Path:
        return self.directory / f"{identity.file_stem}.crt"

    def client_key(self, identity: ClientIdentity) -> Path:
        return self.directory / f"{identity.file_stem}.key"


def create_pki(directory: Path) -> PkiPaths:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    paths = PkiPaths(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)

    def new_key():
        return ec.generate_private_key(ec.SECP256R1())

    ca_key = new_key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mmft-localcluster-ca")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(paths.ca_key, ca_key, paths.ca_cert, ca_cert)

    def issue(subject: x509.Name, usage, extra_extensions=()):
        key = new_key()
        builder = (
            _builder(subject, ca_name, key.public_key(), now)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        for extension in extra_extensions:
            builder = builder.add_extension(extension, critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    alternative_names = x509.SubjectAlternativeName(
        [x509.DNSName(name) for name in APISERVER_DNS_NAMES]
        + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in APISERVER_IPS]
    )
    apiserver_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
    key, cert = issue(apiserver_subject, ExtendedKeyUsageOID.SERVER_AUTH, [alternative_names])
    _write(paths.apiserver_key, key, paths.apiserver_cert, cert)

    for identity in CLIENT_IDENTITIES:
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in identity.groups]
        subject = x509.Name(attributes + [x509.NameAttribute(NameOID.COMMON_NAME, identity.user)])
        key, cert = issue(subject, ExtendedKeyUsageOID.CLIENT_AUTH)
        _write(paths.client_key(identity), key, paths.client_cert(identity), cert)

    service_account_key = new_key()
    _write_key(paths.service_account_key, service_account_key)
    paths.service_account_public_key.write_bytes(_public_pem(service_account_key))
    return paths


def _builder(subject, issuer, public_key, now):
    from cryptography import x509

    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
    )


def _write(key_path: Path, key, cert_path: Path, cert) -> None:
    from cryptography.hazmat.primitives import serialization

    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _write_key(path: Path, key) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.touch(mode=0o600, exist_ok=True)
    path.write_bytes(pem)


def _public_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
