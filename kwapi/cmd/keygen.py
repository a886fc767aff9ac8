"""`kwapi keygen`: make a CURVE key pair for a daemon's bus sockets."""

from __future__ import annotations

import argparse
import os
import sys

import zmq.auth

from kwapi.bus.curve import generate_keys


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the keygen sub-command."""
    parser = commands.add_parser(
        "keygen",
        help="make a CURVE key pair (NAME.key, public; NAME.key_secret, private)",
    )
    parser.add_argument("name", help="name of the key pair, e.g. the host or daemon")
    parser.add_argument("--dir", default=".", help="directory to write the files in")
    parser.add_argument("--force", action="store_true", help="replace existing files")


def keygen(args: argparse.Namespace) -> int:
    """Write the key pair and print where it went and the public key."""
    secret_path = os.path.join(args.dir, f"{args.name}.key_secret")
    if os.path.exists(secret_path) and not args.force:
        print(f"kwapi keygen: error: {secret_path} exists (use --force)", file=sys.stderr)
        return 2
    try:
        public_file, secret_file = generate_keys(args.dir, args.name)
    except OSError as exc:
        print(f"kwapi keygen: error: {exc}", file=sys.stderr)
        return 2
    public, _ = zmq.auth.load_certificate(public_file)
    print(f"public key:  {public_file}")
    print(f"secret key:  {secret_file} (mode 0600; keep it on this host only)")
    print(f"public key value: {public.decode()}")
    return 0
