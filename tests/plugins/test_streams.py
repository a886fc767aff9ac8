"""Energy per stream: configuration, shares, formulas, gaps, checkpoints and persistence."""

from __future__ import annotations

import itertools
import json
import math
import subprocess

import pytest

from kwapi.bus.protocol import Measurement
from kwapi.config import ConfigError
from kwapi.plugins.api.collector import Collector
from kwapi.plugins.api.stream_energy import StreamEnergy, energy_since
from kwapi.plugins.streams import (
    DOWN,
    StreamMap,
    StreamSample,
    figures,
    parse_stream_power,
    sample,
    shares,
)
from tests.harness.configs import write_config
from tests.harness.processes import VENV_BIN

T0 = 1_700_000_000.0
HD = {"up": 1, "bitrate": 4_000_000.0, "fps": 25.0, "width": 1280.0, "height": 720.0}
SD = {"up": 1, "bitrate": 1_000_000.0, "fps": 25.0, "width": 640.0, "height": 360.0}
AUDIO = {"up": 1, "bitrate": 128_000.0}


# -- configuration ------------------------------------------------------------


def test_parse_splits_at_the_first_equal_sign_and_merges_repeated_hosts():
    parsed = parse_stream_power(
        ["enc-1 = live-a, live-b", " enc-2=live-c ", "enc-1 = live-d"], "bitrate"
    )
    assert parsed.hosts == {"enc-1": ("live-a", "live-b", "live-d"), "enc-2": ("live-c",)}
    assert parsed.streams == {
        "live-a": "enc-1",
        "live-b": "enc-1",
        "live-d": "enc-1",
        "live-c": "enc-2",
    }
    assert parsed.share == "bitrate"
    assert not parse_stream_power([])


@pytest.mark.parametrize(
    ("lines", "fragment"),
    [
        (["enc-1 live-a"], "is not 'POWER_PROBE = STREAM"),
        (["enc 1 = live-a"], "'enc 1' is not a valid probe id"),
        (["enc-1 = live a"], "'live a' is not a valid probe id"),
        (["enc-1 = live-a=x"], "'live-a=x' is not a valid probe id"),
        (["enc-1 = , "], "is given no stream"),
        (["enc-1 = live-a", "enc-2 = live-a"], "listed under 'enc-1' too"),
        (["enc-1 = live-a, live-a"], "listed twice"),
        (["enc-1 = live-a", "live-a = live-b"], "both a power probe and a stream"),
        (["enc-1 = live-a", "enc-2 = enc-1"], "both a power probe and a stream"),
    ],
)
def test_bad_configuration_names_the_key(lines, fragment):
    with pytest.raises(ConfigError) as caught:
        parse_stream_power(lines)
    assert caught.value.key == "stream_power"
    assert caught.value.section == "DEFAULT"
    assert fragment in str(caught.value)


def test_bad_share_mode_names_its_key():
    with pytest.raises(ConfigError) as caught:
        parse_stream_power(["a = b"], "loudness")
    assert caught.value.key == "stream_share"


@pytest.mark.parametrize("command", ["kwapi-api", "kwapi-rrd"])
def test_daemons_refuse_a_bad_stream_power_with_one_line(tmp_path, command):
    config = write_config(
        tmp_path,
        "bad.conf",
        f"""
        [DEFAULT]
        signature_checking = false
        state_file = {tmp_path}/state.json
        rrd_dir = {tmp_path}/rrd
        stream_power = enc-1 = live-a
        stream_power = enc-2 = live-a
        """,
    )
    done = subprocess.run(
        [str(VENV_BIN / command), "--config-file", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "[DEFAULT] stream_power:" in lines[0]
    assert str(config) in lines[0]
    assert "listed under 'enc-1' too" in lines[0]


# -- samples and shares -------------------------------------------------------


class Seen:
    def __init__(self, timestamp: float, meters: dict) -> None:
        self.timestamp = timestamp
        self.meters = meters


def test_a_stream_is_up_only_with_up_1_and_a_fresh_reading():
    assert sample(Seen(T0, HD), T0 + 120, 120).up
    assert sample(Seen(T0, HD), T0 + 121, 120) == DOWN
    assert sample(Seen(T0, {"up": 0}), T0, 120) == DOWN
    assert sample(Seen(T0, {"bitrate": 5.0}), T0, 120) == DOWN
    assert sample(None, T0, 120) == DOWN
    seen = sample(Seen(T0, HD), T0, 120)
    assert seen.pixel_rate == 1280 * 720 * 25
    assert sample(Seen(T0, AUDIO), T0, 120).pixel_rate is None


def test_pixel_shares():
    split = shares({"hd": StreamSample(**_kw(HD)), "sd": StreamSample(**_kw(SD))}, "pixels")
    assert split["hd"] == pytest.approx(4 / 5)  # 1280x720 is four times 640x360
    assert split["sd"] == pytest.approx(1 / 5)


def test_audio_only_streams_take_their_bitrate_share_and_video_splits_the_rest():
    samples = {
        "hd": StreamSample(**_kw(HD)),
        "sd": StreamSample(**_kw(SD)),
        "radio": StreamSample(**_kw(AUDIO)),
    }
    split = shares(samples, "pixels")
    radio = 128_000 / 5_128_000
    assert split["radio"] == pytest.approx(radio)
    assert split["hd"] == pytest.approx((1 - radio) * 4 / 5)
    assert split["sd"] == pytest.approx((1 - radio) * 1 / 5)
    assert sum(split.values()) == pytest.approx(1.0)


def test_bitrate_and_equal_shares_and_down_streams_get_nothing():
    samples = {"hd": StreamSample(**_kw(HD)), "sd": StreamSample(**_kw(SD)), "off": DOWN}
    assert shares(samples, "bitrate") == pytest.approx({"hd": 0.8, "sd": 0.2, "off": 0.0})
    assert shares(samples, "equal") == pytest.approx({"hd": 0.5, "sd": 0.5, "off": 0.0})
    assert shares({"off": DOWN}, "pixels") == {"off": 0.0}


def test_shares_fall_back_to_bitrate_then_equal_when_weights_are_missing():
    radio = {"a": StreamSample(True, bitrate=100.0), "b": StreamSample(True, bitrate=300.0)}
    assert shares(radio, "pixels") == pytest.approx({"a": 0.25, "b": 0.75})
    blank = {"a": StreamSample(True), "b": StreamSample(True)}
    assert shares(blank, "pixels") == {"a": 0.5, "b": 0.5}
    assert shares(blank, "bitrate") == {"a": 0.5, "b": 0.5}


def test_figures_of_a_stream():
    hd = StreamSample(**_kw(HD))
    result = figures(hd, 0.5, 80.0)
    assert result.w == 40.0
    assert result.bits_per_joule == pytest.approx(4_000_000 / 40)
    assert result.pixels_per_joule == pytest.approx(1280 * 720 * 25 / 40)
    assert figures(hd, 0.5, None).w is None
    down = figures(DOWN, 0.0, 80.0)
    assert down.w == 0.0 and down.bits_per_joule is None and down.pixels_per_joule is None
    audio = figures(StreamSample(**_kw(AUDIO)), 1.0, 10.0)
    assert audio.bits_per_joule == pytest.approx(12_800) and audio.pixels_per_joule is None


def _kw(meters: dict) -> dict:
    return {k: float(v) for k, v in meters.items() if k != "up"} | {"up": True}


# -- energy over time ---------------------------------------------------------


def tracked(share: str = "pixels", **kwargs) -> tuple[Collector, StreamEnergy]:
    collector = Collector(max_gap=30.0, clock=lambda: T0)
    streams = parse_stream_power(["enc = hd, sd"], share)
    energy = StreamEnergy(streams, collector.latest, max_gap=30.0, checkpoint_step=0, **kwargs)
    return collector, energy


def feed(collector: Collector, energy: StreamEnergy, measurement: Measurement) -> None:
    collector.add(measurement)
    energy.observe(measurement)


def kwh(w_prev: float, w_new: float, seconds: float) -> float:
    return (w_prev + w_new) / 2 * seconds / 3.6e6


def test_energy_is_split_by_share_and_integrated_on_power_readings():
    collector, energy = tracked()
    feed(collector, energy, Measurement("enc", T0, {"w": 100.0}))  # no stream up yet
    feed(collector, energy, Measurement("hd", T0 + 1, HD))
    feed(collector, energy, Measurement("sd", T0 + 1, SD))
    feed(collector, energy, Measurement("enc", T0 + 10, {"w": 200.0}))
    feed(collector, energy, Measurement("sd", T0 + 12, {"up": 0}))
    feed(collector, energy, Measurement("enc", T0 + 20, {"w": 200.0}))
    hd = kwh(0, 160, 10) + kwh(160, 200, 10)
    sd = kwh(0, 40, 10) + kwh(40, 0, 10)
    assert energy.stream_kwh("hd") == pytest.approx(hd)
    assert energy.stream_kwh("sd") == pytest.approx(sd)
    host = energy.host("enc")
    assert host.kwh == pytest.approx(kwh(0, 200, 10) + kwh(200, 200, 10))
    assert host.kwh == pytest.approx(hd + sd)
    assert host.stream_w == {"hd": 200.0, "sd": 0.0}
    # Measurements not about a configured host's power change nothing.
    feed(collector, energy, Measurement("other", T0 + 21, {"w": 500.0}))
    feed(collector, energy, Measurement("enc", T0 + 22, {"temperature_c": 40.0}))
    assert energy.host("enc").kwh == pytest.approx(host.kwh)
    assert energy.host("other") is None


def test_gaps_and_stale_streams_are_not_integrated():
    collector, energy = tracked()
    feed(collector, energy, Measurement("hd", T0, HD))
    feed(collector, energy, Measurement("enc", T0, {"w": 100.0}))
    feed(collector, energy, Measurement("enc", T0 + 31, {"w": 100.0}))  # longer than max_gap
    host = energy.host("enc")
    assert host.gaps == 1 and host.kwh == 0.0
    # The stream's last reading is now 31 s old: it no longer counts as up.
    assert host.streaming_w == 0.0 and host.stream_w["hd"] == 0.0
    feed(collector, energy, Measurement("hd", T0 + 35, HD))
    feed(collector, energy, Measurement("enc", T0 + 41, {"w": 100.0}))
    assert energy.stream_kwh("hd") == pytest.approx(kwh(0, 100, 10))
    # An old or repeated power reading is ignored.
    feed(collector, energy, Measurement("enc", T0 + 41, {"w": 900.0}))
    energy.observe(Measurement("enc", T0 + 40, {"w": 900.0}))
    assert energy.host("enc").w == 100.0


def test_an_overflowing_interval_is_skipped_and_every_counter_stays_finite():
    collector, energy = tracked()
    feed(collector, energy, Measurement("hd", T0, HD))
    feed(collector, energy, Measurement("enc", T0, {"w": 1.7e308}))
    feed(collector, energy, Measurement("hd", T0 + 5, HD))
    feed(collector, energy, Measurement("enc", T0 + 10, {"w": 1.7e308}))
    host = energy.host("enc")
    assert host.gaps == 1 and host.kwh == 0.0
    assert energy.stream_kwh("hd") == 0.0
    # The state stays saveable as strict JSON.
    json.dumps(energy.export(), allow_nan=False)
    feed(collector, energy, Measurement("enc", T0 + 20, {"w": 100.0}))
    feed(collector, energy, Measurement("hd", T0 + 21, HD))
    feed(collector, energy, Measurement("enc", T0 + 30, {"w": 100.0}))
    assert math.isfinite(energy.host("enc").kwh) and energy.stream_kwh("hd") > 0.0


def test_energy_over_a_period_from_checkpoints():
    points = [(0.0, 0.0), (60.0, 1.0), (120.0, 3.0)]
    assert energy_since(points, (150.0, 4.0), 90.0) == (pytest.approx(2.0), 90.0)
    assert energy_since(points, (150.0, 4.0), -50.0) == (4.0, 0.0)
    assert energy_since(points, (150.0, 4.0), 200.0) == (0.0, 200.0)
    assert energy_since(points, (150.0, 4.0), 130.0) == (pytest.approx(2 / 3), 130.0)

    collector, energy = tracked("equal")
    for second in range(0, 101, 10):
        feed(collector, energy, Measurement("hd", T0 + second - 0.5, HD))
        feed(collector, energy, Measurement("enc", T0 + second, {"w": 36.0}))
    per_second = 36.0 / 3.6e6
    assert energy.host_energy_since("enc", T0 + 50) == (pytest.approx(50 * per_second), T0 + 50)
    assert energy.host_energy_since("enc", T0 - 500) == (pytest.approx(100 * per_second), T0)
    assert energy.host_energy_since("nope", T0) == (0.0, None)


def test_checkpoints_thin_out_with_age():
    collector, energy = tracked("equal")
    energy._step = 60.0
    feed(collector, energy, Measurement("hd", T0, HD))
    # Three days of a reading every 25 s would be 10,000 points; they are thinned.
    for index in range(0, 3 * 86400 // 25):
        energy.observe(Measurement("enc", T0 + index * 25, {"w": 10.0}))
    history = energy.host("enc").history
    times = [t for t, _ in history]
    assert times == sorted(times)
    last = times[-1]
    fine = [t for t in times if t >= last - 86400]
    coarse = [t for t in times if t < last - 86400]
    # One checkpoint each 75 s (the first reading 60 s after the last) for a day...
    assert len(fine) == pytest.approx(86400 / 75, abs=2)
    assert all(b - a <= 75 for a, b in itertools.pairwise(fine))
    # ...then one an hour for the two days before.
    assert len(coarse) == pytest.approx(48, abs=2)
    assert all(b - a >= 3600 for a, b in itertools.pairwise(coarse))


def test_state_round_trip_through_json():
    collector, energy = tracked()
    feed(collector, energy, Measurement("hd", T0, HD))
    feed(collector, energy, Measurement("enc", T0, {"w": 100.0}))
    feed(collector, energy, Measurement("enc", T0 + 10, {"w": 100.0}))
    state = json.loads(json.dumps(energy.export()))
    again = StreamEnergy(
        parse_stream_power(["enc = hd, sd"]),
        collector.latest,
        max_gap=30.0,
        state=state,
        checkpoint_step=0,
    )
    assert again.export() == energy.export()
    feed(collector, again, Measurement("enc", T0 + 20, {"w": 100.0}))
    assert again.stream_kwh("hd") == pytest.approx(kwh(100, 100, 20))


def test_empty_map_is_false_and_ignores_everything():
    energy = StreamEnergy(StreamMap(), lambda _: None)
    energy.observe(Measurement("enc", T0, {"w": 1.0}))
    assert energy.export() == {"hosts": {}, "streams": {}}
