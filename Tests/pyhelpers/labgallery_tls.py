"""Throwaway TLS certificates for tests, made with the openssl CLI at test time.

``make_certs(directory)`` writes a test CA, a second CA nobody trusts, and certificates the
first CA signs: a server certificate for ``localhost``, ``127.0.0.1`` and ``server.test``, an
expired one for the same names, and a client certificate (mTLS). Every file is PEM; keys are
P-256 and unencrypted. Use it from a session fixture::

    certs = labgallery_tls.make_certs(tmp_path_factory.mktemp("tls"))
    grpc.ssl_channel_credentials(root_certificates=certs.ca_pem.read_bytes())
"""

import dataclasses
import pathlib
import subprocess

SERVER_NAMES = "DNS:localhost,IP:127.0.0.1,DNS:server.test"


@dataclasses.dataclass(frozen=True)
class Certs:
    """Paths of the PEM files ``make_certs`` wrote."""

    directory: pathlib.Path
    ca_pem: pathlib.Path
    other_ca_pem: pathlib.Path
    server_pem: pathlib.Path
    server_key: pathlib.Path
    expired_pem: pathlib.Path
    expired_key: pathlib.Path
    client_pem: pathlib.Path
    client_key: pathlib.Path


def _openssl(directory: pathlib.Path, *args: str) -> None:
    result = subprocess.run(["openssl", *args], cwd=directory, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{result.stderr}")


def _key_and_csr(directory: pathlib.Path, name: str, cn: str) -> None:
    _openssl(directory, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-subj", f"/CN={cn}", "-keyout", f"{name}.key", "-out", f"{name}.csr")


def _ca(directory: pathlib.Path, name: str, cn: str) -> None:
    _openssl(directory, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-days", "30", "-subj", f"/CN={cn}", "-keyout", f"{name}.key", "-out", f"{name}.pem")


def _sign(directory: pathlib.Path, name: str, ca: str, san: str, *, usage: str,
          start: str | None = None, end: str | None = None) -> None:
    """Signs name.csr with ca into name.pem; `start`/`end` (YYYYMMDDHHMMSSZ) go through `openssl ca`."""
    (directory / f"{name}.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage={usage}\n")
    if start is None:
        _openssl(directory, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                 "-CAcreateserial", "-days", "30", "-sha256", "-extfile", f"{name}.ext", "-out", f"{name}.pem")
        return
    # `openssl x509` cannot back-date; `openssl ca` takes explicit dates.
    db = directory / f"{name}-db"
    db.mkdir()
    (db / "index.txt").write_text("")
    (db / "serial").write_text("1000\n")
    (directory / f"{name}-ca.cnf").write_text(
        "[ca]\ndefault_ca = d\n[d]\n"
        f"database = {db}/index.txt\nserial = {db}/serial\nnew_certs_dir = {db}\n"
        "default_md = sha256\npolicy = p\ncopy_extensions = none\nunique_subject = no\n"
        "[p]\ncommonName = supplied\n")
    _openssl(directory, "ca", "-batch", "-config", f"{name}-ca.cnf", "-cert", f"{ca}.pem", "-keyfile", f"{ca}.key",
             "-startdate", start, "-enddate", end, "-extfile", f"{name}.ext", "-notext",
             "-in", f"{name}.csr", "-out", f"{name}.pem")


def make_certs(directory: pathlib.Path) -> Certs:
    """Writes the CAs and certificates into `directory` (which must exist)."""
    directory = pathlib.Path(directory)
    _ca(directory, "ca", "LabGallery Test CA")
    _ca(directory, "other-ca", "Untrusted Test CA")
    for name, cn in (("server", "localhost"), ("expired", "localhost"), ("client", "test-client")):
        _key_and_csr(directory, name, cn)
    _sign(directory, "server", "ca", SERVER_NAMES, usage="serverAuth")
    _sign(directory, "expired", "ca", SERVER_NAMES, usage="serverAuth",
          start="20200101000000Z", end="20200102000000Z")
    _sign(directory, "client", "ca", "DNS:test-client", usage="clientAuth")
    return Certs(
        directory=directory,
        ca_pem=directory / "ca.pem", other_ca_pem=directory / "other-ca.pem",
        server_pem=directory / "server.pem", server_key=directory / "server.key",
        expired_pem=directory / "expired.pem", expired_key=directory / "expired.key",
        client_pem=directory / "client.pem", client_key=directory / "client.key")
