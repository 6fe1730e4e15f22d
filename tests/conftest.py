"""Shared fixtures: a SQLite file, a PostgreSQL server on loopback, the app and a client.

`backend` runs a test against both databases. PostgreSQL comes from PHYMEM_TEST_POSTGRES_URL
(a server you run; a fresh database is created per test) or else from the Debian server
binaries (apt-get install postgresql), started in a temporary directory on a free loopback
port. initdb refuses to run as root, so as root the server runs as the `postgres` user (or
`nobody`). When CI is set, a PostgreSQL test that would be skipped fails instead.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("backend") == "postgres":
            item.add_marker(pytest.mark.postgres)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and in_ci() and item.get_closest_marker("postgres") is not None:
        report.outcome = "failed"
        report.longrepr = (
            f"PostgreSQL test skipped while CI is set (a skip fails CI): {report.longrepr}"
        )


# --- PostgreSQL --------------------------------------------------------------------------


def _find_pg_bin() -> Path | None:
    configured = os.environ.get("PHYMEM_PG_BIN")
    if configured:
        return Path(configured)
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth, fsync off)."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.base = Path(tempfile.mkdtemp(prefix="phymem-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.port = _free_port()
        self.user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                with contextlib.suppress(KeyError):
                    self.user = pwd.getpwnam(name)
                    break
            if self.user is None:
                raise RuntimeError("running as root and no unprivileged user to run PostgreSQL")
            os.chown(self.base, self.user.pw_uid, self.user.pw_gid)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}
        return subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            cwd=self.base,
            env=env,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
            **kwargs,
        )

    def start(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        self.resume()

    def halt(self) -> None:
        """Stop the server (fast shutdown: clients are disconnected), keeping its data."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start the server on its data directory and port."""
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        result = self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
            "-o", options, "start", check=False,
        )  # fmt: skip
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {result.stderr}\n{log}")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"


class PostgresDatabases:
    """Creates databases on one server (ours or PHYMEM_TEST_POSTGRES_URL's)."""

    def __init__(self, admin_url: str) -> None:
        from sqlalchemy.engine import make_url

        self.admin = make_url(admin_url)
        self.created: list[str] = []

    def _execute(self, sql: str) -> None:
        import psycopg

        url = self.admin
        with psycopg.connect(
            host=url.host, port=url.port, user=url.username, password=url.password,
            dbname=url.database or "postgres", autocommit=True,
        ) as connection:  # fmt: skip
            connection.execute(sql)

    def create(self, template: str | None = None) -> str:
        name = f"phymem_{uuid.uuid4().hex[:12]}"
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{template or "template0"}"')
        self.created.append(name)
        return self.url(name)

    def url(self, name: str) -> str:
        return self.admin.set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        name = make_url(url).database
        with contextlib.suppress(Exception):
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop_all(self) -> None:
        for name in self.created:
            self.drop(self.url(name))


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    """A PostgreSQL server to create databases on (skips, or fails under CI, without one)."""
    external = os.environ.get("PHYMEM_TEST_POSTGRES_URL")
    server: PostgresServer | None = None
    try:
        import psycopg  # noqa: F401
    except ImportError as error:
        _unavailable(f"psycopg is not installed: {error}")
    if external:
        databases = PostgresDatabases(external)
    else:
        bin_dir = _find_pg_bin()
        if bin_dir is None:
            _unavailable("no PostgreSQL server binaries (apt-get install postgresql)")
        server = PostgresServer(bin_dir)
        try:
            server.start()
        except Exception as error:
            server.stop()
            _unavailable(f"could not start PostgreSQL: {error}")
        databases = PostgresDatabases(server.admin_url)
    try:
        yield databases
    finally:
        databases.drop_all()
        if server is not None:
            server.stop()


def _unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"PostgreSQL unavailable while CI is set: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL unavailable: {reason}")


# --- Databases of either backend ----------------------------------------------------------

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def empty_db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of an empty database (no tables) of `backend`."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'phymem.db'}"
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    url = databases.create()
    yield url
    databases.drop(url)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from app.db.migrate import upgrade

    path = tmp_path_factory.mktemp("template") / "phymem.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def _postgres_template(postgres_databases: PostgresDatabases) -> str:
    from sqlalchemy.engine import make_url

    from app.db.migrate import upgrade

    url = postgres_databases.create()
    upgrade(url)
    return str(make_url(url).database)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a migrated database (schema at head, devices seeded) of `backend`."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("_sqlite_template")
        path = tmp_path / "phymem.db"
        for suffix in ("", "-wal", "-shm"):
            source = template.with_name(template.name + suffix)
            if source.exists():
                shutil.copyfile(source, path.with_name(path.name + suffix))
        yield f"sqlite:///{path}"
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    url = databases.create(template=request.getfixturevalue("_postgres_template"))
    yield url
    databases.drop(url)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Any:
    from app.core.config import Settings

    return Settings(database_url=db_url, data_dir=tmp_path)


@pytest.fixture
def app(settings: Any) -> Any:
    from app.main import create_app

    return create_app(settings)


@pytest.fixture
def client(app: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(app) as test_client:
        yield test_client
