"""The logging options every daemon has: log_file and verbose, on a real kwapi-drivers."""

from pathlib import Path

from tests.harness.processes import wait_for

# A wattmeter that never comes up (its "still failing" retries are DEBUG lines)
# beside one that publishes, to know the daemon has run for a while.
SECTIONS = """
[Absent]
driver = Rapl
probes = ['absent']
parameters = {{'interval': 0.05, 'max_backoff': 0.05, 'powercap_path': '{missing}'}}

[Present]
driver = Dummy
probes = ['present']
parameters = {{'interval': 0.05}}
"""


def sections(directory) -> str:
    return SECTIONS.format(missing=f"{directory}/no-powercap")


def test_log_file_gets_every_line_and_verbose_adds_debug_lines(tmpdir_short, kwapi_drivers):
    log_file = Path(tmpdir_short) / "drivers.log"
    process, _ = kwapi_drivers(
        sections(tmpdir_short), defaults=f"verbose = true\nlog_file = {log_file}\n"
    )
    wait_for(
        lambda: log_file.exists() and log_file.read_text().count("still failing") >= 3,
        20,
        "retries logged in the log file",
    )
    assert process.stop() == 0
    lines = log_file.read_text().splitlines()
    assert any(" INFO kwapi-drivers [-] publishing on ipc://" in line for line in lines)
    assert any(" INFO kwapi-drivers [-] stopped; " in line for line in lines)
    assert sum(" WARNING kwapi.drivers.base [-] wattmeter Absent: " in line for line in lines) == 1
    assert (
        sum(
            " DEBUG kwapi.drivers.base [-] wattmeter Absent: still failing" in line
            for line in lines
        )
        >= 3
    )
    assert process.output() == ""  # nothing on stdout or stderr


def test_without_them_info_and_warnings_go_to_the_console_without_debug(
    tmpdir_short, kwapi_drivers
):
    process, client = kwapi_drivers(sections(tmpdir_short))
    process.wait_output("wattmeter Absent: DeviceError", 20)
    # While the other wattmeter publishes 20 readings, the absent one retries as often.
    client.collect(20, timeout=20)
    assert process.stop() == 0
    output = process.output()
    assert " INFO kwapi-drivers [-] publishing on ipc://" in output
    assert " DEBUG " not in output and "still failing" not in output
    assert not list(Path(tmpdir_short).glob("*.log"))
