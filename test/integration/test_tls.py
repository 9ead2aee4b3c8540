"""TLS: verification is on by default, and ca_file makes a private CA
trusted.  Against a local HTTPS mock with a self-signed certificate."""

import os
import shutil
import subprocess
import tempfile

from helpers import (MockProcess, error_text, execute, expect_error, module_db,
                     create_server, scalar)


def _self_signed_certificate():
    """A certificate for 127.0.0.1 and its key, readable by the postgres user."""
    d = tempfile.mkdtemp(prefix="crm_it_tls.")
    os.chmod(d, 0o755)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    os.chmod(cert, 0o644)
    return d, cert, key


def test_tls_verified_by_default_and_ca_file_trusts():
    """The self-signed server is refused (HV00N, a certificate problem named),
    and served once ca_file names its certificate; ssl_verify 'false' also
    works but is an explicit choice."""
    d, cert, key = _self_signed_certificate()
    db = module_db(__name__)
    conn = db.connect()
    try:
        with MockProcess(rows=50, tls=(cert, key)) as m:
            create_server(conn, "tls_default", m.url, max_retries="0")
            execute(conn, "CREATE FOREIGN TABLE tls_default_t (id bigint) SERVER tls_default")
            e = expect_error(conn, "SELECT count(*) FROM tls_default_t")
            assert e.pgcode == "HV00N", (e.pgcode, error_text(e))
            assert "certificate" in error_text(e).lower(), error_text(e)

            create_server(conn, "tls_ca", m.url, ca_file=cert)
            execute(conn, "CREATE FOREIGN TABLE tls_ca_t (id bigint) SERVER tls_ca")
            assert scalar(conn, "SELECT count(*) FROM tls_ca_t") == 50

            create_server(conn, "tls_off", m.url, ssl_verify="false")
            execute(conn, "CREATE FOREIGN TABLE tls_off_t (id bigint) SERVER tls_off")
            assert scalar(conn, "SELECT count(*) FROM tls_off_t") == 50
    finally:
        conn.close()
        shutil.rmtree(d)
