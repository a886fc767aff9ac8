"""Authentication hook of the plugins' HTTP APIs: none, or Keystone tokens.

:func:`wrap` is the only entry point the plugin daemons (kwapi-api,
kwapi-history) use: it returns the WSGI application unchanged with
``noauth`` and wraps it in Keystone's middleware (see
:mod:`kwapi.plugins.keystone`) with ``keystone``.
"""

from __future__ import annotations

from wsgiref.types import WSGIApplication

from oslo_config import cfg

auth_opts = [
    cfg.StrOpt(
        "auth_strategy",
        default="noauth",
        choices=[
            ("noauth", "every request is served without a token"),
            ("keystone", "requests need a Keystone token (see [keystone_authtoken])"),
        ],
        help="How API requests are authenticated.",
    ),
    cfg.ListOpt(
        "allowed_roles",
        default=["admin"],
        help="With auth_strategy = keystone, roles of which a token needs at least one.",
    ),
    cfg.BoolOpt(
        "metrics_auth",
        default=True,
        help="With auth_strategy = keystone, whether /metrics needs a token too "
        "(/healthz never does); set to false for a scraper without a token.",
    ),
]


def wrap(wsgi_app: WSGIApplication, conf: cfg.ConfigOpts) -> WSGIApplication:
    """Return *wsgi_app* behind the authentication *conf* asks for."""
    if conf.auth_strategy == "keystone":
        from kwapi.plugins.keystone import make_keystone_middleware

        return make_keystone_middleware(wsgi_app, conf)
    return wsgi_app
