"""``registry-token-server``: run the reference token server on waitress."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import waitress
from registry_htpasswd.htpasswd import Htpasswd
from registry_htpasswd.rules import NO_ACCESS, parse_rules
from registry_htpasswd.watched import WatchedFile

from registry_token_server.app import TokenIssuer, create_token_app
from registry_token_server.keys import load_or_create

log = logging.getLogger("registry_token_server")


def registry_config(realm: str, service: str, issuer: str, bundle: Path) -> str:
    """The ``auth:`` section the registry needs to trust this server's tokens."""
    return (f"auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n"
            f"    rootcertbundle: {bundle.resolve()}\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="registry-token-server", description=__doc__)
    p.add_argument("--htpasswd", required=True, help="htpasswd file of bcrypt hashes (htpasswd -B)")
    p.add_argument("--rules", help="access rules file (YAML); without it users may do everything, anonymous nothing")
    p.add_argument("--keys", default="token-keys", help="directory of the signing key (made if absent)")
    p.add_argument("--listen", default="127.0.0.1:5001", help="HOST:PORT to listen on")
    p.add_argument("--realm", help="the URL clients reach /token at (default http://LISTEN/token)")
    p.add_argument("--service", default="registry", help="the registry's auth.token.service")
    p.add_argument("--issuer", default="registry-token-server", help="the tokens' iss")
    p.add_argument("--expiry", type=int, default=300, help="seconds a token is valid")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        p.error(f"--listen {args.listen!r} is not HOST:PORT")
    realm = args.realm or f"http://{args.listen}/token"
    try:
        key, cert = load_or_create(Path(args.keys), args.issuer)
        rules = None
        if args.rules:
            rules = WatchedFile(args.rules, parse_rules, NO_ACCESS, name="access rules file")
            if rules.error:
                raise ValueError(rules.error)
        users = Htpasswd(args.htpasswd)
    except (OSError, ValueError) as exc:
        print(f"registry-token-server: {exc}", file=sys.stderr)
        return 2
    if users.error:
        log.error("%s; every login fails until it can be read", users.error)
    issuer = TokenIssuer(key=key, issuer=args.issuer, service=args.service, users=users, rules=rules,
                         expiry=args.expiry)
    print("Add this to the registry's config.yml:\n\n" + registry_config(realm, args.service, args.issuer, cert),
          flush=True)
    waitress.serve(create_token_app(issuer, realm), host=host.strip("[]"), port=int(port), threads=4,
                   ident="registry-token-server")
    return 0


if __name__ == "__main__":
    sys.exit(main())
