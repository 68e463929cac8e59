"""TLS and tokens with the real tritonclient: `ferroserve serve --tls-cert --tls-key
--tls-client-ca` against a test CA made here (cryptography), tritonclient's `ssl=True` over
HTTP (geventhttpclient) and gRPC (grpcio) with a client certificate, refused without one; and
RS256 tokens signed here (PKCS#1 v1.5 over SHA-256, no JWT library) checked against the JWKS
file the server reads, sent with tritonclient's `headers=`."""
import base64
import datetime
import json
import os
import ssl
import tempfile
import time

import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tritonclient.utils import InferenceServerException

from conftest import Server


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, issuer, key, issuer_key, ca=False, server=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
    else:
        import ipaddress
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if server:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _write(d, name, data):
    p = os.path.join(d, name)
    with open(p, "wb") as f:
        f.write(data)
    return p


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _int(n):
    return _b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def rs256(key, kid, claims):
    head = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}).encode())
    body = _b64(json.dumps(claims).encode())
    sig = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{_b64(sig)}"


@pytest.fixture(scope="module")
def tls():
    with tempfile.TemporaryDirectory() as d:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _cert("ferroserve test CA", "ferroserve test CA", ca_key, ca_key, ca=True)
        srv_key = ec.generate_private_key(ec.SECP256R1())
        srv = _cert("localhost", "ferroserve test CA", srv_key, ca_key, server=True)
        cli_key = ec.generate_private_key(ec.SECP256R1())
        cli = _cert("client-1", "ferroserve test CA", cli_key, ca_key)
        files = {
            "ca": _write(d, "ca.pem", _pem(ca)),
            "cert": _write(d, "server.pem", _pem(srv)),
            "key": _write(d, "server.key", _key_pem(srv_key)),
            "client_cert": _write(d, "client.pem", _pem(cli)),
            "client_key": _write(d, "client.key", _key_pem(cli_key)),
        }
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pub = rsa_key.public_key().public_numbers()
        jwks = {"keys": [{"kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig",
                          "n": _int(pub.n), "e": _int(pub.e)}]}
        files["jwks"] = _write(d, "jwks.json", json.dumps(jwks).encode())
        now = int(time.time())
        token = rs256(rsa_key, "rsa-1", {"sub": "svc", "aud": "ferroserve", "exp": now + 600,
                                        "scope": "infer read"})
        ctx = ssl.create_default_context(cafile=files["ca"])
        ctx.load_cert_chain(files["client_cert"], files["client_key"])
        s = Server(["--tls-cert", files["cert"], "--tls-key", files["key"],
                    "--tls-client-ca", files["ca"], "--jwt-jwks", files["jwks"],
                    "--jwt-audience", "ferroserve"],
                   headers={"Authorization": f"Bearer {token}"}, ssl_context=ctx)
        files.update(token=token, rsa_key=rsa_key, now=now)
        yield s, files
        s.stop()


def iris_input(mod):
    x = mod.InferInput("input", [1, 4], "FP32")
    x.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32))
    return x


def _label(r):
    return r.as_numpy("label").tolist()


def test_http_over_tls_with_a_client_certificate(tls):
    s, f = tls
    bearer = {"Authorization": f"Bearer {f['token']}"}
    opts = {"ca_certs": f["ca"], "certfile": f["client_cert"], "keyfile": f["client_key"]}
    c = th.InferenceServerClient(s.http, ssl=True, ssl_options=opts)
    assert c.is_server_live()
    assert c.get_model_metadata("iris", headers=bearer)["name"] == "iris"
    assert _label(c.infer("iris", [iris_input(th)], headers=bearer)) in ([b"setosa"], ["setosa"])
    # An expired token and a token signed by another key: 401.
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for bad in (rs256(f["rsa_key"], "rsa-1", {"aud": "ferroserve", "exp": f["now"] - 3600, "scope": "infer"}),
                rs256(other, "rsa-1", {"aud": "ferroserve", "exp": f["now"] + 600, "scope": "infer"})):
        with pytest.raises(InferenceServerException) as e:
            c.infer("iris", [iris_input(th)], headers={"Authorization": f"Bearer {bad}"})
        assert "401" in str(e.value.status()) or "token" in str(e.value)
    # No client certificate: refused at the handshake.
    bare = th.InferenceServerClient(s.http, ssl=True, ssl_options={"ca_certs": f["ca"]},
                                    connection_timeout=5, network_timeout=5)
    with pytest.raises(Exception):
        bare.is_server_live()


def test_grpc_over_tls_with_a_client_certificate(tls):
    s, f = tls
    bearer = {"authorization": f"Bearer {f['token']}"}
    c = tg.InferenceServerClient(s.grpc, ssl=True, root_certificates=f["ca"],
                                 private_key=f["client_key"], certificate_chain=f["client_cert"])
    assert c.is_server_live()
    assert c.get_model_metadata("iris", headers=bearer).name == "iris"
    assert _label(c.infer("iris", [iris_input(tg)], headers=bearer)) in ([b"setosa"], ["setosa"])
    with pytest.raises(InferenceServerException) as e:
        c.infer("iris", [iris_input(tg)])
    assert "UNAUTHENTICATED" in str(e.value.status())
    # Tokens over gRPC: expired, for another audience (401 -> UNAUTHENTICATED), without the
    # scope (PERMISSION_DENIED).
    for claims, code in (({"aud": "ferroserve", "exp": f["now"] - 3600, "scope": "infer"}, "UNAUTHENTICATED"),
                         ({"aud": "elsewhere", "exp": f["now"] + 600, "scope": "infer"}, "UNAUTHENTICATED"),
                         ({"aud": "ferroserve", "exp": f["now"] + 600, "scope": "read"}, "PERMISSION_DENIED")):
        token = rs256(f["rsa_key"], "rsa-1", claims)
        with pytest.raises(InferenceServerException) as e:
            c.infer("iris", [iris_input(tg)], headers={"authorization": f"Bearer {token}"})
        assert code in str(e.value.status()), (claims, e.value)
    bare = tg.InferenceServerClient(s.grpc, ssl=True, root_certificates=f["ca"])
    with pytest.raises(InferenceServerException):
        bare.is_server_live(client_timeout=5)
