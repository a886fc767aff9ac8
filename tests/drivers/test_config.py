"""drivers.conf wattmeter sections: parsing and the errors they give."""

from pathlib import Path

import pytest
import stevedore

from kwapi.config import ConfigError, Section
from kwapi.drivers.config import available_drivers, parse_wattmeters
from kwapi.drivers.dummy import DummyDriver

FIXTURES = Path(__file__).parent.parent / "fixtures"


def section(name="Meter", file="drivers.conf", **values):
    return Section(file, name, {key: str(value) for key, value in values.items()})


def test_valid_section_builds_a_wattmeter():
    [meter] = parse_wattmeters(
        [section(driver="Dummy", probes="['A', None, 'B']", parameters="{'min': 1, 'max': 2}")]
    )
    assert meter.driver_class is DummyDriver
    assert meter.probe_ids == ("A", None, "B")
    assert meter.parameters.min == 1.0
    assert meter.parameters.interval == 1.0


def test_parameters_default_to_empty():
    [meter] = parse_wattmeters([section(driver="Dummy", probes="['A']")])
    assert meter.parameters.max == 150.0


def test_library_sections_are_not_wattmeters():
    assert parse_wattmeters([section(name="keystone_authtoken", auth_url="x")]) == []


@pytest.mark.parametrize(
    ("values", "key", "fragment"),
    [
        ({"probes": "['A']"}, "driver", "missing"),
        ({"driver": "Dummy"}, "probes", "missing"),
        ({"driver": "Nope", "probes": "['A']"}, "driver", "unknown driver 'Nope'"),
        ({"driver": "Dummy", "probes": "['A'"}, "probes", "not a Python literal"),
        ({"driver": "Dummy", "probes": "__import__('os')"}, "probes", "not a Python literal"),
        ({"driver": "Dummy", "probes": "'A'"}, "probes", "non-empty list"),
        ({"driver": "Dummy", "probes": "[]"}, "probes", "non-empty list"),
        ({"driver": "Dummy", "probes": "[None]"}, "probes", "every probe is None"),
        ({"driver": "Dummy", "probes": "['a b']"}, "probes", "invalid probe id"),
        ({"driver": "Dummy", "probes": "[1]"}, "probes", "invalid probe id"),
        ({"driver": "Dummy", "probes": "['A', 'A']"}, "probes", "appears twice"),
        ({"driver": "Dummy", "probes": "['A']", "parameters": "[1]"}, "parameters", "dict"),
        (
            {"driver": "Dummy", "probes": "['A']", "parameters": "{'interval': 'x'}"},
            "parameters['interval']",
            "valid number",
        ),
        (
            {"driver": "Dummy", "probes": "['A']", "parameters": "{'interval': 0}"},
            "parameters['interval']",
            "greater than or equal to 0.001",
        ),
        (
            {"driver": "Dummy", "probes": "['A']", "parameters": "{'colour': 1}"},
            "parameters['colour']",
            "Extra inputs",
        ),
        ({"driver": "Dummy", "probes": "['A']", "probe": "x"}, "probe", "unknown key"),
    ],
)
def test_errors_name_file_section_and_key(values, key, fragment):
    with pytest.raises(ConfigError) as caught:
        parse_wattmeters([section(**values)])
    error = caught.value
    assert (error.file, error.section, error.key) == ("drivers.conf", "Meter", key)
    assert fragment in str(error)
    assert str(error).startswith(f"drivers.conf: [Meter] {key}:")


def test_cross_field_parameter_errors_name_the_parameters_key():
    with pytest.raises(ConfigError) as caught:
        parse_wattmeters(
            [section(driver="Dummy", probes="['A']", parameters="{'min': 5, 'max': 5}")]
        )
    assert str(caught.value) == "drivers.conf: [Meter] parameters: min must be lower than max"


def test_probe_ids_are_unique_across_wattmeters():
    with pytest.raises(ConfigError) as caught:
        parse_wattmeters(
            [
                section(name="One", driver="Dummy", probes="['A', 'B']"),
                section(name="Two", file="other.conf", driver="Dummy", probes="['C', 'B']"),
            ]
        )
    assert str(caught.value) == (
        "other.conf: [Two] probes: probe id 'B' is already used by wattmeter [One]"
    )


def test_wattmeter_defined_in_two_files_is_an_error_naming_the_second_one():
    with pytest.raises(ConfigError) as caught:
        parse_wattmeters(
            [
                section(driver="Dummy", probes="['A']"),
                section(file="b.conf", driver="Dummy", probes="['B']"),
            ]
        )
    assert (caught.value.file, caught.value.section) == ("b.conf", "Meter")
    assert str(caught.value) == (
        "b.conf: [Meter] wattmeter section defined twice (also in drivers.conf): "
        "define each wattmeter in one file"
    )


@pytest.fixture
def extra_drivers(monkeypatch):
    """The fixture packages of drivers (one that loads, one that does not) on sys.path."""
    monkeypatch.syspath_prepend(str(FIXTURES / "extra_drivers"))
    monkeypatch.syspath_prepend(str(FIXTURES / "broken_drivers"))
    # stevedore keeps each namespace's entry points for the life of the process.
    monkeypatch.setattr(stevedore.ExtensionManager, "ENTRY_POINT_CACHE", {})


def test_a_driver_that_cannot_be_imported_is_a_one_line_error(extra_drivers, caplog):
    assert {"Broken", "OneProbe", "Dummy"} <= set(available_drivers())
    with pytest.raises(ConfigError) as caught:
        parse_wattmeters([section(driver="Broken", probes="['A']")])
    assert str(caught.value) == (
        "drivers.conf: [Meter] driver: driver 'Broken' cannot be loaded: "
        "ModuleNotFoundError: No module named 'kwapi_missing_dependency'"
    )
    # A broken package does not stop the others from loading, and nothing was logged.
    [meter] = parse_wattmeters([section(driver="OneProbe", probes="['A']")])
    assert meter.driver_class.__name__ == "OneProbeDriver"
    assert not caplog.records


@pytest.mark.parametrize(
    ("probes", "parameters", "expected"),
    [
        (
            "['A', 'B']",
            "{}",
            "probes: driver OneProbe: this meter measures one outlet: give exactly one probe",
        ),
        (
            "['A']",
            "{'interval': 0.5}",
            "parameters: driver OneProbe: this meter cannot be read more than once a second",
        ),
    ],
)
def test_refusals_of_validate_name_the_key(extra_drivers, probes, parameters, expected):
    with pytest.raises(ConfigError) as caught:
        parse_wattmeters([section(driver="OneProbe", probes=probes, parameters=parameters)])
    assert str(caught.value) == f"drivers.conf: [Meter] {expected}"
