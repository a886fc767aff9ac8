"""A real Keystone for the tests: sqlite, fernet tokens, served by gunicorn on 127.0.0.1.

:class:`KeystoneServer` bootstraps it with keystone-manage (an ``admin`` user
with the ``admin`` role on the ``admin`` project), serves it, and creates the
users and catalog entries the tests need through Keystone's own REST API.
:class:`AuthApi` runs kwapi-api behind it, fed by a real signed publisher.
"""

from __future__ import annotations

import contextlib
import getpass
import grp
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from kwapi.bus.protocol import Measurement
from tests.harness.bus import SECRET, bus_publisher
from tests.harness.configs import write_config
from tests.harness.processes import (
    VENV_BIN,
    Daemon,
    free_tcp_port,
    short_tmpdir,
    stop_process,
    wait_for,
)

ADMIN_PASSWORD = "admin-secret"
STEP_TIMEOUT = 90.0

CONFIG = """\
[DEFAULT]
use_stderr = true
[database]
connection = sqlite:///{dir}/keystone.db
[token]
provider = fernet
[fernet_tokens]
key_repository = {dir}/fernet-keys
[fernet_receipts]
key_repository = {dir}/fernet-keys
[credential]
key_repository = {dir}/credential-keys
[identity]
# bcrypt's cheapest setting: the tests issue tokens, they do not guard secrets.
password_hash_rounds = 4
"""


class KeystoneServer:
    """One Keystone, from bootstrap to stop, in a temporary directory."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="kwks"))
        self.port = free_tcp_port()
        self.url = f"http://127.0.0.1:{self.port}/v3"
        self.config = self.dir / "keystone.conf"
        self.config.write_text(CONFIG.format(dir=self.dir))
        self.log_path = self.dir / "keystone.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.process: subprocess.Popen | None = None
        self._admin: ks_session.Session | None = None

    # -- life cycle -----------------------------------------------------------------

    def _manage(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [str(VENV_BIN / "keystone-manage"), "--config-file", str(self.config), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def _wait(self, *processes: subprocess.Popen) -> None:
        for process in processes:
            try:
                status = process.wait(STEP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise AssertionError(f"keystone-manage took over {STEP_TIMEOUT} s") from None
            if status != 0:
                raise AssertionError(
                    f"keystone-manage {process.args[3:]} failed:\n{self.output()[-3000:]}"
                )

    def bootstrap(self) -> None:
        """Create the database, the key repositories, the admin user and the catalog."""
        owner = ["--keystone-user", getpass.getuser(), "--keystone-group"]
        owner.append(grp.getgrgid(os.getgid()).gr_name)
        # The key repositories do not touch the database: prepare all three at once.
        self._wait(
            self._manage("db_sync"),
            self._manage("fernet_setup", *owner),
            self._manage("credential_setup", *owner),
        )
        self._wait(
            self._manage(
                "bootstrap",
                "--bootstrap-username",
                "admin",
                "--bootstrap-password",
                ADMIN_PASSWORD,
                "--bootstrap-project-name",
                "admin",
                "--bootstrap-role-name",
                "admin",
                "--bootstrap-service-name",
                "keystone",
                "--bootstrap-region-id",
                "RegionOne",
                "--bootstrap-public-url",
                self.url,
            )
        )

    def start(self, timeout: float = 60.0) -> None:
        """Serve Keystone with gunicorn and wait until it answers."""
        env = {
            **os.environ,
            "OS_KEYSTONE_CONFIG_FILES": str(self.config),
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        }
        self.process = subprocess.Popen(
            [
                str(VENV_BIN / "gunicorn"),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
                "--threads",
                "4",
                "--timeout",
                "60",
                "tests.harness.keystone_wsgi:application",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        wait_for(self._answers, timeout, f"Keystone on {self.url} (log: {self.log_path})")

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"Keystone exited:\n{self.output()[-3000:]}")
        try:
            return requests.get(self.url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def halt(self) -> None:
        """Stop serving but keep the database and keys: start() serves them again."""
        if self.process is not None:
            stop_process(self.process, timeout=15, signum=signal.SIGINT)
            self.process = None

    def stop(self) -> None:
        """Stop gunicorn (SIGINT: quick shutdown; then SIGKILL) and remove every file."""
        if self.process is not None:
            stop_process(self.process, timeout=15, signum=signal.SIGINT)
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- identity -------------------------------------------------------------------

    def session(self, username: str, password: str, project: str = "admin") -> ks_session.Session:
        """A keystoneauth1 session scoped to *project*."""
        auth = v3.Password(
            auth_url=self.url,
            username=username,
            password=password,
            project_name=project,
            user_domain_id="default",
            project_domain_id="default",
        )
        return ks_session.Session(auth=auth, timeout=30)

    def token(self, username: str, password: str, project: str = "admin") -> str:
        """A fresh token of *username*, scoped to *project*."""
        return self.session(username, password, project).get_token()

    @property
    def admin(self) -> ks_session.Session:
        if self._admin is None:
            self._admin = self.session("admin", ADMIN_PASSWORD)
        return self._admin

    def _call(self, method: str, path: str, **kwargs) -> dict:
        response = self.admin.request(self.url + path, method, raise_exc=True, timeout=30, **kwargs)
        return response.json() if response.content else {}

    def _find(self, kind: str, name: str) -> str:
        found = self._call("GET", f"/{kind}s", params={"name": name})[f"{kind}s"]
        if not found:
            raise AssertionError(f"no {kind} named {name!r} in Keystone")
        return found[0]["id"]

    def project(self, name: str) -> str:
        """The id of project *name*, created if needed."""
        existing = self._call("GET", "/projects", params={"name": name})["projects"]
        if existing:
            return existing[0]["id"]
        body = {"project": {"name": name, "domain_id": "default"}}
        return self._call("POST", "/projects", json=body)["project"]["id"]

    def user(self, name: str, password: str, role: str, project: str = "admin") -> str:
        """Create user *name* holding *role* on *project*; return its id."""
        project_id = self.project(project)
        body = {"user": {"name": name, "password": password, "domain_id": "default"}}
        user_id = self._call("POST", "/users", json=body)["user"]["id"]
        role_id = self._find("role", role)
        self._call("PUT", f"/projects/{project_id}/users/{user_id}/roles/{role_id}")
        return user_id

    def endpoint(self, service_type: str, name: str, url: str) -> str:
        """Register a service of *service_type* with a public endpoint at *url*."""
        body = {"service": {"type": service_type, "name": name, "enabled": True}}
        service_id = self._call("POST", "/services", json=body)["service"]["id"]
        body = {
            "endpoint": {
                "service_id": service_id,
                "interface": "public",
                "url": url,
                "region_id": "RegionOne",
                "enabled": True,
            }
        }
        return self._call("POST", "/endpoints", json=body)["endpoint"]["id"]


SERVICE_USER = ("kwapi", "kwapi-secret")
READER_USER = ("viewer", "viewer-secret")


@contextlib.contextmanager
def running_keystone() -> Iterator[KeystoneServer]:
    """A bootstrapped, running Keystone with kwapi's service user and a reader.

    Users: ``admin`` (role admin on project admin), ``kwapi`` (role service on
    project service: what kwapi-api checks tokens with) and ``viewer`` (only
    the reader role on project admin).
    """
    server = KeystoneServer()
    try:
        server.bootstrap()
        server.start()
        server.user(*SERVICE_USER, role="service", project="service")
        server.user(*READER_USER, role="reader", project="admin")
        yield server
    finally:
        server.stop()


API_CONFIG = """
[DEFAULT]
api_host = 127.0.0.1
api_port = {port}
probes_endpoint = {endpoint}
driver_metering_secret = {secret}
state_file = {dir}/state.json
auth_strategy = keystone
metrics_auth = {metrics_auth}
{extra_default}
[keystone_authtoken]
{authtoken}
{extra_sections}
"""


def authtoken_section(keystone_url: str, **changes: str) -> str:
    """The [keystone_authtoken] lines of kwapi's service user, with *changes*."""
    values = {
        "www_authenticate_uri": keystone_url,
        "auth_url": keystone_url,
        "interface": "public",
        "auth_type": "password",
        "username": SERVICE_USER[0],
        "password": SERVICE_USER[1],
        "project_name": "service",
        "user_domain_name": "Default",
        "project_domain_name": "Default",
        "http_connect_timeout": "5",
        **changes,
    }
    return "\n".join(f"{key} = {value}" for key, value in values.items())


class AuthApi:
    """A kwapi-api daemon with Keystone auth and the publisher feeding it."""

    def __init__(
        self,
        keystone_url: str,
        *,
        metrics_auth: bool = True,
        extra_default: str = "",
        extra_sections: str = "",
        **authtoken: str,
    ) -> None:
        self.dir = short_tmpdir()
        endpoint = f"ipc://{self.dir}/bus"
        self.publisher = bus_publisher(endpoint)
        self.port = free_tcp_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = write_config(
            self.dir,
            "api.conf",
            API_CONFIG.format(
                port=self.port,
                endpoint=endpoint,
                secret=SECRET,
                dir=self.dir,
                metrics_auth=str(metrics_auth).lower(),
                extra_default=extra_default,
                extra_sections=extra_sections,
                authtoken=authtoken_section(keystone_url, **authtoken),
            ),
        )
        self.daemon = Daemon("kwapi-api", "--config-file", str(config))
        self.daemon.wait_output("serving the API", timeout=30)

    def get(self, path: str, token: str | None = None) -> requests.Response:
        headers = {"X-Auth-Token": token} if token is not None else {}
        return requests.get(self.base + path, headers=headers, timeout=30, allow_redirects=False)

    def publish(self, probe: str, watts: float, timestamp: float | None = None) -> None:
        """Publish one signed measurement of *probe* on the daemon's bus."""
        when = time.time() if timestamp is None else timestamp
        self.publisher.publish(Measurement(probe, when, {"w": watts}))

    def close(self) -> None:
        self.daemon.close()
        self.publisher.close()
        shutil.rmtree(self.dir, ignore_errors=True)
