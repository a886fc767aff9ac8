"""Keystone authentication of the plugins' HTTP APIs (kwapi-api, kwapi-history).

keystonemiddleware's ``auth_token`` checks the ``X-Auth-Token`` of each
request against Keystone, configured from the daemon's own
``[keystone_authtoken]`` section. Around it, :class:`KeystoneGate` adds what
kwapi needs on top:

* ``/healthz`` never needs a token, ``/metrics`` only when ``metrics_auth`` is true;
* a token is accepted only if its roles meet ``allowed_roles`` (403 otherwise);
* every refusal is a JSON error document: 401 (no, invalid or expired token),
  403 (valid token, no allowed role), 503 (Keystone could not be asked), so an
  unreachable Keystone closes the API instead of opening it.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlparse
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from oslo_config import cfg

from kwapi import extras
from kwapi.config import ConfigError, check_options

if TYPE_CHECKING:
    from keystoneauth1.loading import BaseLoader
    from keystoneauth1.plugin import BaseAuthPlugin

LOG = logging.getLogger(__name__)

GROUP = "keystone_authtoken"
OPEN_PATHS = frozenset({"/healthz"})
METRICS_PATH = "/metrics"
# Set in the WSGI environment once a request got past every check, so that an
# error status answered by the application itself is never rewritten.
PASSED = "kwapi.auth.passed"
#: The modules of the keystone extra that kwapi imports, in the order it first needs them.
EXTRA_MODULES = (
    "keystoneauth1.exceptions",
    "keystoneauth1.loading",
    "keystonemiddleware.auth_token",
)

#: An HTTP header, as WSGI hands them over.
Header = tuple[str, str]
#: What ``start_response`` takes as *exc_info*: ``sys.exc_info()``'s value.
ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]

_TITLES = {401: "Unauthorized", 403: "Forbidden", 503: "Service Unavailable"}
_MESSAGES = {
    401: "this request needs a valid Keystone token in the X-Auth-Token header",
    503: "the token could not be checked: Keystone is unreachable or refuses "
    "kwapi's service credentials; try again later",
}


def error_response(
    start_response: StartResponse, code: int, message: str, headers: list[Header] | None = None
) -> list[bytes]:
    """Answer *code* with kwapi's JSON error document."""
    body = json.dumps(
        {"error": {"code": code, "title": _TITLES[code], "message": message}}
    ).encode()
    start_response(
        f"{code} {_TITLES[code]}",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            *(headers or []),
        ],
    )
    return [body]


class RoleCheck:
    """Inner layer: let through only confirmed tokens holding an allowed role."""

    def __init__(self, app: WSGIApplication, allowed_roles: Iterable[str]) -> None:
        self.app = app
        self.allowed = {role.strip().lower() for role in allowed_roles if role.strip()}

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # auth_token strips these headers from the client's request and sets
        # them itself; with delay_auth_decision it lets invalid tokens through
        # marked "Invalid", which must still be refused here.
        if environ.get("HTTP_X_IDENTITY_STATUS") != "Confirmed":
            return error_response(start_response, 401, _MESSAGES[401])
        roles = {
            role.strip().lower() for role in environ.get("HTTP_X_ROLES", "").split(",") if role
        }
        if not roles & self.allowed:
            LOG.info(
                "refused user %s (roles: %s): none of the allowed roles %s",
                environ.get("HTTP_X_USER_NAME") or environ.get("HTTP_X_USER_ID"),
                ",".join(sorted(roles)) or "none",
                ",".join(sorted(self.allowed)),
            )
            message = "this token has none of the roles allowed to read kwapi: " + ", ".join(
                sorted(self.allowed)
            )
            return error_response(start_response, 403, message)
        environ[PASSED] = True
        return self.app(environ, start_response)


class KeystoneGate:
    """Outer layer: route around or through auth_token and normalise its refusals."""

    def __init__(
        self, app: WSGIApplication, protected: WSGIApplication, metrics_auth: bool
    ) -> None:
        self.app = app
        self.protected = protected
        self.open_paths = OPEN_PATHS if metrics_auth else OPEN_PATHS | {METRICS_PATH}

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") in self.open_paths:
            return self.app(environ, start_response)
        # The last refusal auth_token answered: (status code, WWW-Authenticate headers).
        refused: list[tuple[int, list[Header]]] = []

        def capture(
            status: str, headers: list[Header], exc_info: ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            code = int(status[:3])
            if code in (401, 503) and not environ.get(PASSED):
                refused.append((code, [(k, v) for k, v in headers if k == "WWW-Authenticate"]))
                return lambda _data: None
            return start_response(status, headers, exc_info)

        try:
            body = self.protected(environ, capture)
        except Exception as exc:
            if environ.get(PASSED) or not _is_identity_error(exc):
                raise
            LOG.error("cannot check a token with Keystone: %s", exc)
            return error_response(start_response, 503, _MESSAGES[503])
        if not refused:
            return body
        if hasattr(body, "close"):
            body.close()
        code, headers = refused[-1]
        if code == 503:
            LOG.warning("refused a request: Keystone is unreachable")
        return error_response(start_response, code, _MESSAGES[code], headers)


def _is_identity_error(exc: Exception) -> bool:
    from keystoneauth1 import exceptions as ksa_exceptions

    return isinstance(exc, ksa_exceptions.ClientException)


def make_keystone_middleware(wsgi_app: WSGIApplication, conf: cfg.ConfigOpts) -> WSGIApplication:
    """Wrap *wsgi_app* in Keystone token checks configured from *conf*.

    Raises :class:`ConfigError` when ``[keystone_authtoken]`` cannot work:
    the ``keystone`` extra missing, no or unknown ``auth_type``, missing
    credentials, a value of the wrong type or a URL that is not http(s).
    """
    _require_extra()
    from keystoneauth1 import exceptions as ksa_exceptions
    from keystonemiddleware import auth_token

    if not {role.strip() for role in conf.allowed_roles if role.strip()}:
        raise ConfigError(
            "no role listed: no token could ever be accepted",
            section="DEFAULT",
            key="allowed_roles",
        )
    groups = auth_token.list_opts()
    for group, opts in groups:
        conf.register_opts(opts, group=group)
    # Only tokens with a service role may act as service tokens.
    conf.set_default("service_token_roles_required", True, group=GROUP)
    check_options(conf, groups)
    auth_group, auth_type = _check_service_credentials(conf)
    _check_urls(conf, auth_group)

    try:
        checked = auth_token.AuthProtocol(
            RoleCheck(wsgi_app, conf.allowed_roles), {"oslo_config_config": conf}
        )
    except ksa_exceptions.MissingRequiredOptions as exc:
        names = ", ".join(opt.dest for opt in exc.options)
        raise ConfigError(
            f"missing for auth_type {auth_type}: {names}",
            section=auth_group,
            key=exc.options[0].dest,
        ) from None
    except (ksa_exceptions.ClientException, cfg.Error, ValueError) as exc:
        raise ConfigError(f"invalid configuration: {exc}", section=GROUP) from None
    LOG.info(
        "Keystone authentication: roles %s allowed; /metrics %s",
        ", ".join(conf.allowed_roles),
        "needs a token" if conf.metrics_auth else "is open",
    )
    return KeystoneGate(wsgi_app, checked, conf.metrics_auth)


def _require_extra() -> None:
    """Import the keystone extra's modules; ConfigError naming the extra if one is missing."""
    try:
        for name in EXTRA_MODULES:
            importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(
            f"Keystone authentication needs the keystone extra ({exc}): "
            + extras.install_hint("keystone"),
            section="DEFAULT",
            key="auth_strategy",
        ) from None


def _check_service_credentials(conf: cfg.ConfigOpts) -> tuple[str, str]:
    """Register and check the service credentials; return (their section, auth_type).

    The credentials may live in another section than ``[keystone_authtoken]``,
    named by its ``auth_section``.
    """
    from keystoneauth1 import exceptions as ksa_exceptions
    from keystoneauth1 import loading

    auth_group: str = conf[GROUP].auth_section or GROUP
    if auth_group != GROUP:
        conf.register_opts(loading.get_auth_common_conf_options(), group=auth_group)
    auth_type: str | None = conf[auth_group].auth_type
    if not auth_type:
        raise ConfigError(
            "auth_type is not set: kwapi needs service credentials to check tokens "
            "(e.g. auth_type = password with auth_url, username, password, project_name)",
            section=auth_group,
            key="auth_type",
        )
    try:
        loader: BaseLoader[BaseAuthPlugin] = loading.get_plugin_loader(auth_type)
    except ksa_exceptions.NoMatchingPlugin:
        raise ConfigError(
            f"unknown authentication plugin {auth_type!r}", section=auth_group, key="auth_type"
        ) from None
    plugin_opts = loading.get_auth_plugin_conf_options(loader)
    conf.register_opts(plugin_opts, group=auth_group)
    check_options(conf, [(auth_group, plugin_opts)])
    for opt in loader.get_options():
        if opt.required and not getattr(conf[auth_group], opt.dest, None):
            raise ConfigError(
                f"missing for auth_type {auth_type}", section=auth_group, key=opt.dest
            )
    return auth_group, auth_type


def _check_urls(conf: cfg.ConfigOpts, auth_group: str) -> None:
    """ConfigError unless ``auth_url`` and ``www_authenticate_uri``, where set, are http(s)."""
    for group, key in ((auth_group, "auth_url"), (GROUP, "www_authenticate_uri")):
        value = getattr(conf[group], key, None)
        if value and urlparse(value).scheme not in ("http", "https"):
            raise ConfigError(
                f"{value!r} is not an http:// or https:// URL", section=group, key=key
            )
