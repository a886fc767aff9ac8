"""Options of the bus, and factories that build publishers and receivers from them.

Kwapi's option names are kept so existing configuration files carry over.
For kwapi-drivers, ``probes_endpoint`` is the endpoint its publisher binds;
for the forwarder and the plugins it lists the endpoints to connect to.
"""

from __future__ import annotations

from collections.abc import Callable

import zmq
from oslo_config import cfg, types

from kwapi.bus.protocol import Measurement, is_valid_probe_id
from kwapi.bus.publisher import Publisher
from kwapi.bus.receiver import MessageValidator, Receiver
from kwapi.bus.signing import Signer, Verifier
from kwapi.config import ConfigError

ENDPOINT_REGEX = r"^(tcp://[^\s]+:(\d+|\*)|ipc://[^\s]+|inproc://[^\s]+)$"
Endpoint = types.String(regex=ENDPOINT_REGEX, type_name="ZeroMQ endpoint")

publisher_opts = [
    cfg.Opt(
        "probes_endpoint",
        type=Endpoint,
        default="ipc:///tmp/kwapi-drivers",
        help="ZeroMQ endpoint the drivers publish on (bound), "
        "e.g. ipc:///run/kwapi/drivers or tcp://127.0.0.1:9000.",
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
]

receiver_opts = [
    cfg.ListOpt(
        "probes_endpoint",
        item_type=Endpoint,
        default=["ipc:///tmp/kwapi-forwarder"],
        help="Endpoints (drivers or forwarders) to receive measurements from.",
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
]


def make_publisher(conf: cfg.ConfigOpts, context: zmq.Context | None = None) -> Publisher:
    """Build and bind the drivers' publisher; raise ConfigError if it cannot."""
    signer = None
    if conf.enable_signing:
        if not conf.metering_secret:
            raise ConfigError(
                "must be set when enable_signing is true", section="DEFAULT", key="metering_secret"
            )
        signer = Signer(conf.metering_secret)
    try:
        return Publisher(conf.probes_endpoint, signer, sndhwm=conf.publisher_hwm, context=context)
    except zmq.ZMQError as exc:
        raise ConfigError(
            f"cannot bind {conf.probes_endpoint}: {exc}", section="DEFAULT", key="probes_endpoint"
        ) from None


def make_receiver(
    conf: cfg.ConfigOpts,
    handler: Callable[[Measurement], None],
    context: zmq.Context | None = None,
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
    )
