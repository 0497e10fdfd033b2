"""TLS, mutual TLS and the bearer token."""

import pytest

import stimloop
from conftest import TOKEN


def test_tls_with_the_token(secure_server, pki):
    with stimloop.Client(secure_server.address, tls=pki["ca"], token=TOKEN, timeout=30) as c:
        c.wait_until_serving(timeout=60)
        assert [m.id for m in c.models()] == ["demo", "demo_population"]
    # The CA as bytes and a TLS object, the token from a file.
    tls = stimloop.TLS(ca=pki["ca"].read_bytes(), server_name="localhost")
    token_file = pki["ca"].parent / "token"
    token_file.write_text(f"# comment\n\n  {TOKEN}  \n")
    with stimloop.Client(secure_server.address, tls=tls, token_file=token_file, timeout=30) as c:
        assert c.model("demo").num_outputs == 1


def test_missing_or_wrong_token_is_unauthenticated(secure_server, pki):
    for token in (None, "wrong-token-0123456789abcdef"):
        with stimloop.Client(secure_server.address, tls=pki["ca"], token=token, timeout=30) as c:
            with pytest.raises(stimloop.Unauthenticated) as caught:
                c.models()
            assert caught.value.code.name == "UNAUTHENTICATED" and caught.value.message
            # Health answers without a token (load balancers probe it).
            assert c.health(timeout=30) == "SERVING"


def test_plaintext_or_untrusted_certificate_fails(secure_server, pki):
    with stimloop.Client(secure_server.address, token=TOKEN, timeout=5) as plain:
        with pytest.raises(stimloop.Unavailable):
            plain.models()
    # A CA that did not sign the server's certificate: the handshake fails.
    with stimloop.Client(secure_server.address, tls=pki["other_ca"], token=TOKEN, timeout=5) as c:
        with pytest.raises(stimloop.Unavailable):
            c.models()


def test_mutual_tls(mutual_tls_server, pki):
    tls = stimloop.TLS(ca=pki["ca"], cert=pki["client"], key=pki["client_key"])
    with stimloop.Client(mutual_tls_server.address, tls=tls, timeout=30) as c:
        c.wait_until_serving(timeout=60)
        assert c.model("demo").num_outputs == 1
    # Without a client certificate the server refuses the handshake.
    with stimloop.Client(mutual_tls_server.address, tls=pki["ca"], timeout=5) as c:
        with pytest.raises(stimloop.Unavailable):
            c.models()


def test_mutual_tls_needs_cert_and_key(pki):
    with pytest.raises(ValueError, match="cert and key go together"):
        stimloop.Client("127.0.0.1:1", tls=stimloop.TLS(ca=pki["ca"], cert=pki["server"]))
