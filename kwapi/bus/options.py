"""Options of the bus, and factories that build publishers and receivers from them.

Kwapi's option names are kept so existing configuration files carry over.
For kwapi-drivers, ``probes_endpoint`` is the endpoint its publisher binds;
for the forwarder and the plugins it lists the endpoints to connect to
(:func:`probes_endpoint_opt` defines it for all three).  Which daemon
registers which of these lists is said once, in :mod:`kwapi.opts`.
"""

from __future__ import annotations

from collections.abc import Callable

import zmq
from oslo_config import cfg, types

from kwapi.bus.curve import CurveClient, CurveKeyError, CurveServer, load_secret_certificate
from kwapi.bus.protocol import Message, is_valid_probe_id
from kwapi.bus.publisher import Publisher
from kwapi.bus.receiver import MessageValidator, Receiver
from kwapi.bus.signing import Signer, Verifier
from kwapi.config import ConfigError

ENDPOINT_REGEX = r"^(tcp://[^\s]+:(\d+|\*)|ipc://[^\s]+|inproc://[^\s]+)$"
Endpoint = types.String(regex=ENDPOINT_REGEX, type_name="ZeroMQ endpoint")

#: Default endpoints, chained: the drivers bind DRIVERS_ENDPOINT, the forwarder
#: relays it to FORWARDER_ENDPOINT, which the plugins connect to.
DRIVERS_ENDPOINT = "ipc:///tmp/kwapi-drivers"
FORWARDER_ENDPOINT = "ipc:///tmp/kwapi-forwarder"


def probes_endpoint_opt(default: str, help_text: str, *, binds: bool = False) -> cfg.Opt:
    """Kwapi's ``probes_endpoint`` option, the one definition of it.

    With *binds*, the one endpoint a publisher binds (kwapi-drivers);
    otherwise the list of endpoints a subscriber connects to, by default
    ``[default]`` (kwapi-forwarder and the plugins).
    """
    if binds:
        return cfg.Opt("probes_endpoint", type=Endpoint, default=default, help=help_text)
    return cfg.ListOpt("probes_endpoint", item_type=Endpoint, default=[default], help=help_text)


curve_secret_key_opt = cfg.StrOpt(
    "curve_secret_key",
    help="This daemon's CURVE secret key file (made by `kwapi keygen`). On a "
    "daemon that binds (drivers, forwarder), setting it encrypts the bus with "
    "CURVE; on one that connects, it is the identity shown to the server "
    "(a fresh key pair is used when unset).",
)
curve_allowed_clients_opt = cfg.StrOpt(
    "curve_allowed_clients",
    help="Directory of the public key files of the clients allowed to connect "
    "to this daemon's CURVE sockets; unset admits any client that knows this "
    "daemon's public key.",
)
curve_server_key_opt = cfg.ListOpt(
    "curve_server_key",
    default=[],
    help="Public CURVE key of the server behind probes_endpoint: a public key "
    "file made by `kwapi keygen` (or its 40 Z85 characters, with any $ written "
    "$$); one key for every endpoint, or one per endpoint in the same order. "
    "Setting it encrypts the connections.",
)

#: kwapi-drivers' publisher.
publisher_opts = [
    probes_endpoint_opt(
        DRIVERS_ENDPOINT,
        "ZeroMQ endpoint the drivers publish on (bound), "
        "e.g. ipc:///run/kwapi/drivers or tcp://127.0.0.1:9000.",
        binds=True,
    ),
    cfg.BoolOpt(
        "enable_signing",
        default=True,
        help="Sign every measurement with HMAC-SHA256 of its payload.",
    ),
    cfg.StrOpt(
        "metering_secret",
        secret=True,
        help="Secret the drivers sign measurements with; required when enable_signing is true.",
    ),
    cfg.IntOpt(
        "publisher_hwm",
        default=100_000,
        min=1,
        help="Messages queued per subscriber before new ones are dropped.",
    ),
    curve_secret_key_opt,
    curve_allowed_clients_opt,
]

#: The relay of kwapi-forwarder.
forwarder_opts = [
    probes_endpoint_opt(
        DRIVERS_ENDPOINT, "Endpoints of the drivers (or upstream forwarders) to relay."
    ),
    cfg.Opt(
        "forwarder_endpoint",
        type=Endpoint,
        default=FORWARDER_ENDPOINT,
        help="Endpoint the forwarder binds for plugins and downstream forwarders.",
    ),
    cfg.IntOpt(
        "forwarder_rcvhwm",
        default=100_000,
        min=1,
        help="Messages queued from upstream before new ones are dropped.",
    ),
    cfg.IntOpt(
        "forwarder_sndhwm",
        default=100_000,
        min=1,
        help="Messages queued per downstream subscriber before new ones are dropped.",
    ),
    curve_secret_key_opt,
    curve_allowed_clients_opt,
    curve_server_key_opt,
]

#: The receiver of the plugin daemons.
receiver_opts = [
    probes_endpoint_opt(
        FORWARDER_ENDPOINT, "Endpoints (drivers or forwarders) to receive measurements from."
    ),
    cfg.BoolOpt(
        "signature_checking",
        default=True,
        help="Accept only measurements signed with one of driver_metering_secret.",
    ),
    cfg.ListOpt(
        "driver_metering_secret",
        secret=True,
        default=[],
        help="Secrets the drivers sign with; several may be listed while a "
        "secret is being rotated.",
    ),
    cfg.ListOpt(
        "watch_probe",
        default=[],
        help="Probe ids to subscribe to; empty means every probe.",
    ),
    cfg.FloatOpt(
        "acceptance_window",
        default=300.0,
        min=1.0,
        help="Seconds a measurement's timestamp may differ from this host's "
        "clock before it is rejected.",
    ),
    cfg.IntOpt(
        "receiver_hwm",
        default=100_000,
        min=1,
        help="Messages queued in the receiver before new ones are dropped.",
    ),
    curve_server_key_opt,
    curve_secret_key_opt,
]


def make_curve_server(
    conf: cfg.ConfigOpts, context: zmq.Context[zmq.Socket[bytes]] | None = None
) -> CurveServer | None:
    """Return the CurveServer the options ask for, or None; raise ConfigError."""
    if not conf.curve_secret_key:
        return None
    try:
        load_secret_certificate(conf.curve_secret_key)
    except CurveKeyError as exc:
        raise ConfigError(str(exc), section="DEFAULT", key="curve_secret_key") from None
    try:
        return CurveServer(conf.curve_secret_key, conf.curve_allowed_clients, context)
    except CurveKeyError as exc:
        raise ConfigError(str(exc), section="DEFAULT", key="curve_allowed_clients") from None


def make_curve_client(conf: cfg.ConfigOpts, endpoint_count: int) -> CurveClient | None:
    """Return the CurveClient the options ask for, or None; raise ConfigError."""
    if not conf.curve_server_key:
        return None
    if conf.curve_secret_key:
        try:
            load_secret_certificate(conf.curve_secret_key)
        except CurveKeyError as exc:
            raise ConfigError(str(exc), section="DEFAULT", key="curve_secret_key") from None
    try:
        client = CurveClient(conf.curve_server_key, conf.curve_secret_key)
        client.check_endpoints(endpoint_count)
    except CurveKeyError as exc:
        raise ConfigError(str(exc), section="DEFAULT", key="curve_server_key") from None
    return client


def make_publisher(
    conf: cfg.ConfigOpts, context: zmq.Context[zmq.Socket[bytes]] | None = None
) -> Publisher:
    """Build and bind the drivers' publisher; raise ConfigError if it cannot."""
    signer = None
    if conf.enable_signing:
        if not conf.metering_secret:
            raise ConfigError(
                "must be set when enable_signing is true", section="DEFAULT", key="metering_secret"
            )
        signer = Signer(conf.metering_secret)
    curve = make_curve_server(conf, context)
    try:
        return Publisher(
            conf.probes_endpoint, signer, sndhwm=conf.publisher_hwm, context=context, curve=curve
        )
    except zmq.ZMQError as exc:
        raise ConfigError(
            f"cannot bind {conf.probes_endpoint}: {exc}", section="DEFAULT", key="probes_endpoint"
        ) from None


def make_receiver(
    conf: cfg.ConfigOpts,
    handler: Callable[[Message], None],
    context: zmq.Context[zmq.Socket[bytes]] | None = None,
) -> Receiver:
    """Build (not start) a receiver from the options; raise ConfigError if invalid."""
    verifier = None
    if conf.signature_checking:
        if not conf.driver_metering_secret:
            raise ConfigError(
                "must be set when signature_checking is true",
                section="DEFAULT",
                key="driver_metering_secret",
            )
        verifier = Verifier(conf.driver_metering_secret)
    for probe in conf.watch_probe:
        if not is_valid_probe_id(probe):
            raise ConfigError(f"invalid probe id {probe!r}", section="DEFAULT", key="watch_probe")
    validator = MessageValidator(verifier, window=conf.acceptance_window)
    return Receiver(
        conf.probes_endpoint,
        handler,
        validator,
        probes=conf.watch_probe,
        rcvhwm=conf.receiver_hwm,
        context=context,
        curve=make_curve_client(conf, len(conf.probes_endpoint)),
    )
