"""The certificate the TLS profiles serve: a self-signed one for 127.0.0.1, made per run.

The load clients do not verify it (loopback only, and every server shows the same one), so a
self-signed certificate is enough. It is an EC P-256 key, what a production deployment would
pick today (cheaper handshakes than RSA 2048), made with the `openssl` command-line tool.
"""

from __future__ import annotations

import os
import shutil
import subprocess

OPENSSL_TIMEOUT_S = 30.0


class CertificateError(Exception):
    """No certificate could be made (no openssl); the TLS profiles cannot start."""


def make_certificate(workdir: str) -> tuple[str, str]:
    """(certificate, key) paths in `workdir`, made once per run."""
    cert, key = os.path.join(workdir, "tls-cert.pem"), os.path.join(workdir, "tls-key.pem")
    if os.path.exists(cert) and os.path.exists(key):
        return cert, key
    openssl = shutil.which("openssl")
    if openssl is None:
        raise CertificateError("openssl is not installed: no certificate for the TLS profiles")
    argv = [
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=OPENSSL_TIMEOUT_S)
    if done.returncode != 0:
        raise CertificateError(f"openssl failed: {done.stderr.strip()[-300:]}")
    return cert, key
