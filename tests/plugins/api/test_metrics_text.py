"""The probes' /metrics families, written directly, read as prometheus_client would write them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from kwapi.plugins.api.collector import ProbeRecord
from kwapi.plugins.api.metrics import meter_family, probe_families_text

T0 = 1_795_000_000.123456

RECORDS = [
    ProbeRecord("gpu-0", T0, 1.25e-3, {"w": 250.5, "temperature_c": 61.0}, T0, 2),
    ProbeRecord("node-1.rack:2@x", T0 + 1, 0.0, {"w": -3.0, "kwh": 9.0}, T0 + 1, 0),
    ProbeRecord("stream", T0 + 2, 0.0, {"up": 0, "bitrate": 1e16, "receiver_x": 1.0}),
    ProbeRecord("tiny", T0 + 3, 7.5e-300, {"w": 1e-7, "temperature_c": 20.0}, T0 + 3, 0),
]


class Reference:
    """The same families built with prometheus_client's objects, as kwapi-api used to."""

    def collect(self):
        labels = ["probe"]
        power = GaugeMetricFamily(
            "kwapi_power_watts", "Last power reading of the probe, in watts.", labels=labels
        )
        energy = CounterMetricFamily(
            "kwapi_energy_joules",
            "Energy the probe has used since it was first seen, in joules.",
            labels=labels,
        )
        stamp = GaugeMetricFamily(
            "kwapi_measurement_timestamp_seconds",
            "Driver time of the probe's last measurement, in seconds since the epoch.",
            labels=labels,
        )
        gaps = CounterMetricFamily(
            "kwapi_energy_gaps",
            "Intervals left out of the probe's energy: longer than max_gap, or overflowing.",
            labels=labels,
        )
        others: dict[str, GaugeMetricFamily] = {}
        for record in RECORDS:
            if record.w is not None:
                power.add_metric([record.probe_id], record.w)
            energy.add_metric([record.probe_id], record.kwh * 3.6e6)
            stamp.add_metric([record.probe_id], record.timestamp)
            gaps.add_metric([record.probe_id], record.gaps)
            for meter, value in record.meters.items():
                name = meter_family(meter)
                if name is not None:
                    if name not in others:
                        others[name] = GaugeMetricFamily(
                            name, f"Last value of meter {meter!r} of the probe.", labels=labels
                        )
                    others[name].add_metric([record.probe_id], value)
        return [power, energy, stamp, gaps, *others.values()]


def parsed(text: str) -> list[tuple]:
    return [
        (f.name, f.type, f.documentation, [(s.name, s.labels, s.value) for s in f.samples])
        for f in text_string_to_metric_families(text)
    ]


def test_written_families_read_as_prometheus_clients():
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Reference())
    expected = parsed(generate_latest(registry).decode())
    written = probe_families_text(RECORDS)
    assert parsed(written) == expected
    assert [f[0] for f in expected] == [
        "kwapi_power_watts",
        "kwapi_energy_joules",
        "kwapi_measurement_timestamp_seconds",
        "kwapi_energy_gaps",
        "kwapi_temperature_c",
        "kwapi_up",
        "kwapi_bitrate",
    ]
    assert written.endswith("\n") and "\n\n" not in written


def test_no_probe_still_declares_the_families():
    families = parsed(probe_families_text([]))
    assert [(name, samples) for name, _, _, samples in families] == [
        ("kwapi_power_watts", []),
        ("kwapi_energy_joules", []),
        ("kwapi_measurement_timestamp_seconds", []),
        ("kwapi_energy_gaps", []),
    ]
