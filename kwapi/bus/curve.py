"""CURVE encryption and authentication of bus sockets (ZeroMQ CurveZMQ).

A socket that binds is a CURVE server: it holds a secret key, and a ZAP
authenticator admits only clients whose public keys lie in a directory (or
any client that knows the server's public key, when no directory is set).
A socket that connects is a CURVE client: it must know the server's public
key, and proves its own key pair.  Keys are ZeroMQ certificate files, made by
``kwapi keygen``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

Z85_KEY_LENGTH = 40


class CurveKeyError(ValueError):
    """A key or key file that cannot be used."""


def load_secret_certificate(path: str) -> tuple[bytes, bytes]:
    """Return (public, secret) keys from a ``.key_secret`` certificate file."""
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise CurveKeyError(f"cannot read secret key file {path}: {exc}") from None
    if not secret:
        raise CurveKeyError(f"{path} holds no secret key (use the .key_secret file)")
    return public, secret


def parse_public_key(value: str) -> bytes:
    """Return a public key given as a certificate file path or as 40 Z85 characters."""
    value = value.strip()
    if not os.path.exists(value) and len(value) == Z85_KEY_LENGTH:
        try:
            zmq.utils.z85.decode(value.encode("ascii"))
        except (ValueError, UnicodeEncodeError, KeyError):
            raise CurveKeyError(f"{value!r} is not a Z85 public key") from None
        return value.encode("ascii")
    try:
        public, _ = zmq.auth.load_certificate(value)
    except (OSError, ValueError) as exc:
        raise CurveKeyError(f"cannot read public key file {value}: {exc}") from None
    return public


class CurveServer:
    """Makes binding sockets CURVE servers and runs the ZAP authenticator."""

    def __init__(
        self,
        secret_key_file: str,
        allowed_clients_dir: str | None,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        self.public, self._secret = load_secret_certificate(secret_key_file)
        if allowed_clients_dir and not os.path.isdir(allowed_clients_dir):
            raise CurveKeyError(f"{allowed_clients_dir} is not a directory of public keys")
        self._allowed = allowed_clients_dir or zmq.auth.CURVE_ALLOW_ANY
        self._authenticator = ThreadAuthenticator(context or zmq.Context.instance())
        self._started = False

    def start(self) -> None:
        """Start authenticating incoming CURVE connections."""
        if not self._started:
            self._authenticator.start()
            self._authenticator.configure_curve(domain="*", location=self._allowed)
            self._started = True

    def apply(self, socket: zmq.Socket[bytes]) -> None:
        """Make *socket* (before bind) a CURVE server."""
        self.start()
        socket.curve_secretkey = self._secret
        socket.curve_publickey = self.public
        socket.curve_server = True

    def stop(self) -> None:
        """Stop the authenticator."""
        if self._started:
            self._authenticator.stop()
            self._started = False


class CurveClient:
    """Makes connecting sockets CURVE clients of known servers.

    *server_keys* holds one key for every endpoint, or one per endpoint in
    the order they are connected.  Without *secret_key_file*, a fresh key
    pair is made: enough for servers that admit any client.
    """

    def __init__(self, server_keys: Sequence[str], secret_key_file: str | None = None) -> None:
        if not server_keys:
            raise CurveKeyError("no server public key")
        self._server_keys = [parse_public_key(key) for key in server_keys]
        if secret_key_file:
            self.public, self._secret = load_secret_certificate(secret_key_file)
        else:
            self.public, self._secret = zmq.curve_keypair()

    def check_endpoints(self, count: int) -> None:
        """Raise CurveKeyError unless there is one key, or one per endpoint."""
        if len(self._server_keys) not in (1, count):
            raise CurveKeyError(
                f"{len(self._server_keys)} server keys for {count} endpoints: "
                "give one key, or one per endpoint"
            )

    def apply(self, socket: zmq.Socket[bytes], index: int = 0) -> None:
        """Make *socket* a CURVE client of the server at endpoint number *index*."""
        key = self._server_keys[index if len(self._server_keys) > 1 else 0]
        socket.curve_secretkey = self._secret
        socket.curve_publickey = self.public
        socket.curve_serverkey = key


def generate_keys(directory: str, name: str) -> tuple[str, str]:
    """Write NAME.key (public, mode 0644) and NAME.key_secret (mode 0600) in *directory*.

    pyzmq writes the pair into a fresh private folder (mode 0700, so no
    file in it can be read by others whatever the umask); the files are
    given their modes there, then renamed into place, replacing existing
    files of that name (a symbolic link is replaced, not followed).
    """
    os.makedirs(directory, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{name}.", dir=directory)
    try:
        made = zmq.auth.create_certificates(staging, name)
        placed = []
        for made_file, mode in zip(made, (0o644, 0o600), strict=True):
            os.chmod(made_file, mode)
            placed.append(os.path.join(directory, os.path.basename(made_file)))
            os.replace(made_file, placed[-1])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return placed[0], placed[1]
