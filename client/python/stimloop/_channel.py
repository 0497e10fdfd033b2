"""The channel to a stimloop-server: plaintext, TLS or mutual TLS, and the bearer token."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Union

import grpc

# A call's timeout argument when not given: the client's default (None would mean no deadline).
DEFAULT = object()

# A PEM given as its bytes, or as the path of a file holding it.
Pem = Union[bytes, str, os.PathLike]

# Big enough for a batch of 256 images or a synthesis of large display-size PNGs.
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 256 << 20),
                   ("grpc.max_send_message_length", 64 << 20)]


@dataclass(frozen=True)
class TLS:
    """TLS settings. ca: the CA that signed the server's certificate (None: the system's roots);
    cert + key: a client certificate for mutual TLS; server_name: the name to check in the
    server's certificate when it differs from the address's host."""

    ca: Pem | None = None
    cert: Pem | None = None
    key: Pem | None = None
    server_name: str | None = None


def _pem(value: Pem | None, name: str) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    try:
        with open(value, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"{name}: cannot read {os.fspath(value)[:200]!r}: {e.strerror}") from None


def read_token(path: str | os.PathLike) -> str:
    """The first line of a token file that is neither blank nor a # comment (the CLI's rule)."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                token = line.strip()
                if token and not token.startswith("#"):
                    return token
    except OSError as e:
        raise ValueError(f"token_file: cannot read {os.fspath(path)[:200]!r}: {e.strerror}") from None
    raise ValueError(f"token_file: no token in {os.fspath(path)[:200]!r}")


def make_channel(address: str, tls: TLS | bool | Pem | None) -> grpc.Channel:
    """tls: None/False plaintext; True TLS with the system's roots; a PEM (path or bytes) TLS
    trusting that CA; a TLS object for anything else."""
    if not address:
        raise ValueError("address: empty; expected HOST:PORT")
    if tls is None or tls is False:
        return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    if tls is True:
        tls = TLS()
    elif not isinstance(tls, TLS):
        tls = TLS(ca=tls)
    if (tls.cert is None) != (tls.key is None):
        raise ValueError("tls: cert and key go together (mutual TLS)")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_pem(tls.ca, "tls.ca"), private_key=_pem(tls.key, "tls.key"),
        certificate_chain=_pem(tls.cert, "tls.cert"))
    options = list(CHANNEL_OPTIONS)
    if tls.server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    return grpc.secure_channel(address, credentials, options=options)
