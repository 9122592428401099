"""Test certificates made with the `openssl` command-line tool.

`make_certs(directory)` writes, into `directory` (a pytest tmp_path):

- a CA (`ca.pem`, `ca.key`);
- a server certificate signed by it for 127.0.0.1 / localhost
  (`server.pem`, `server.key`; SAN IP:127.0.0.1 and DNS:localhost);
- one client certificate per name, subject `/CN=<name>`, signed by the CA
  (`<name>.pem`, `<name>.key`);
- an unrelated "rogue" CA and a client certificate it signed
  (`rogue-ca.pem`, `rogue-client.pem`, `rogue-client.key`); its subject is
  `/CN=client1`, the same as a trusted client's, so only the signature tells
  them apart.

Keys are EC P-256 in PKCS#8 PEM ("BEGIN PRIVATE KEY"), the default output of
OpenSSL 3, and quick to make. Every openssl call is bounded by a timeout.
"""

import secrets
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

OPENSSL = "openssl"
OPENSSL_TIMEOUT_S = 30
DAYS = "30"

# A self-contained config, so the result does not depend on the system's
# openssl.cnf. Sections are picked with -extensions.
_CONFIG = """\
[req]
distinguished_name = dn
prompt = no

[dn]

[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass
class Certs:
    dir: Path
    ca: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    clients: dict = field(default_factory=dict)  # name -> (cert path, key path)
    rogue_ca: Path = None
    rogue_client: tuple = None  # (cert path, key path), signed by rogue_ca

    def client(self, name):
        return self.clients[name]


def _openssl(*args, cwd):
    subprocess.run([OPENSSL, *map(str, args)], cwd=cwd, check=True, capture_output=True,
                   timeout=OPENSSL_TIMEOUT_S)


def _config(directory):
    path = Path(directory) / "openssl-test.cnf"
    if not path.exists():
        path.write_text(_CONFIG)
    return path


def _new_key_and_csr(directory, name, subject):
    d = Path(directory)
    key, csr = d / f"{name}.key", d / f"{name}.csr"
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", csr, "-subj", subject,
             "-config", _config(d), cwd=d)
    return key, csr


def make_ca(directory, name="ca", subject="/CN=Chronik Test CA"):
    """A self-signed CA: (cert path, key path)."""
    d = Path(directory)
    key, cert = d / f"{name}.key", d / f"{name}.pem"
    _openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", cert, "-days", DAYS, "-subj", subject,
             "-set_serial", _serial(), "-config", _config(d), "-extensions", "ca", cwd=d)
    return cert, key


def _sign(directory, name, csr, ca, ca_key, extensions):
    d = Path(directory)
    cert = d / f"{name}.pem"
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-set_serial", _serial(),
             "-days", DAYS, "-out", cert, "-extfile", _config(d), "-extensions", extensions, cwd=d)
    csr.unlink()
    return cert


def _serial():
    # Positive, at most 20 bytes (RFC 5280), and different for every certificate.
    return str(secrets.randbits(64) + 1)


def make_server_cert(directory, ca, ca_key, name="server", cn="localhost"):
    """A server certificate for 127.0.0.1 / localhost signed by `ca`:
    (cert path, key path)."""
    key, csr = _new_key_and_csr(directory, name, f"/CN={cn}")
    return _sign(directory, name, csr, ca, ca_key, "server"), key


def make_client_cert(directory, ca, ca_key, name, cn=None):
    """A client certificate with subject /CN=<cn or name> signed by `ca`:
    (cert path, key path)."""
    key, csr = _new_key_and_csr(directory, name, f"/CN={cn or name}")
    return _sign(directory, name, csr, ca, ca_key, "client"), key


def make_certs(directory, clients=("client1",)):
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ca, ca_key = make_ca(d)
    server_cert, server_key = make_server_cert(d, ca, ca_key)
    made = {name: make_client_cert(d, ca, ca_key, name) for name in clients}
    rogue_ca, rogue_ca_key = make_ca(d, "rogue-ca", "/CN=Rogue Test CA")
    rogue_client = make_client_cert(d, rogue_ca, rogue_ca_key, "rogue-client", cn="client1")
    return Certs(dir=d, ca=ca, ca_key=ca_key, server_cert=server_cert, server_key=server_key,
                 clients=made, rogue_ca=rogue_ca, rogue_client=rogue_client)


def der_of(pem_path):
    """The DER bytes of the (first) certificate in a PEM file."""
    return ssl.PEM_cert_to_DER_cert(Path(pem_path).read_text())
