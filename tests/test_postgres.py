"""The multi-user deployment: a real PostgreSQL server (Debian's package, started here) holding both
the Dagster instance (deploy/postgres/dagster.yaml, settings from the environment) and the MLflow
backend store; the tiny graph end to end, checked as the SQLite test checks it."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import dagster as dg
import pytest

from pipelines.tiny import write_tiny_spec

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[1]
USER = "ganpipe"


def _postgres_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def _as_server_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` account."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@pytest.fixture(scope="module")
def postgres(free_port, unavailable):
    bin_dir = _postgres_bin()
    if bin_dir is None:
        unavailable("PostgreSQL is not installed (.ci/run installs Debian's postgresql package)")
    if os.geteuid() == 0:
        try:
            import pwd

            server_user = pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root and there is no 'postgres' account to run the server as")
    # Not under pytest's temp root: that is private to root, and the server runs as another account.
    base = Path(tempfile.mkdtemp(prefix="ganpipe-postgres-"))
    data, sockets = base / "data", base / "sockets"
    data.mkdir()
    sockets.mkdir()
    if os.geteuid() == 0:
        for path in (base, data, sockets):
            os.chown(path, server_user.pw_uid, server_user.pw_gid)
    port = free_port()
    subprocess.run(_as_server_user([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", USER]), check=True, capture_output=True, cwd=base)
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    started = subprocess.run(
        _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "server.log"), "-w", "start"]),
        capture_output=True,
        text=True,
        cwd=base,
    )
    if started.returncode != 0:
        unavailable(f"PostgreSQL could not be started: {started.stderr.strip() or started.stdout.strip()}")
    try:
        for database in ("dagster", "mlflow"):
            subprocess.run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, database], check=True, capture_output=True)
        yield {"port": port, "bin": bin_dir}
    finally:
        subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]), capture_output=True, cwd=base)
        shutil.rmtree(base, ignore_errors=True)


def _query(postgres: dict, database: str, sql: str) -> list[str]:
    done = subprocess.run(
        [str(postgres["bin"] / "psql"), "-h", "127.0.0.1", "-p", str(postgres["port"]), "-U", USER, "-d", database, "-At", "-c", sql],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.split()


def test_whole_graph_on_postgresql(ganpipe_env, postgres, monkeypatch, materialize_tiny, assert_first_night):
    env = ganpipe_env
    for key, value in {
        "GANPIPE_PG_HOST": "127.0.0.1",
        "GANPIPE_PG_PORT": str(postgres["port"]),
        "GANPIPE_PG_USER": USER,
        "GANPIPE_PG_PASSWORD": "",
        "GANPIPE_PG_DAGSTER_DB": "dagster",
    }.items():
        monkeypatch.setenv(key, value)
    shutil.copy(ROOT / "deploy" / "postgres" / "dagster.yaml", env["dagster_home"] / "dagster.yaml")  # the documented file itself
    tracking_uri = f"postgresql+psycopg2://{USER}@127.0.0.1:{postgres['port']}/mlflow"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    write_tiny_spec(env["specs"])

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        result = materialize_tiny(env, tracking_uri=tracking_uri, instance=instance, raise_on_error=False)
        assert_first_night(env, result, tracking_uri)
        assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.SUCCESS  # a failed uplift gate fails no run, as assert_first_night checks

    # The records are in PostgreSQL, not in files under the storage root.
    assert result.run_id in _query(postgres, "dagster", "select run_id from runs")
    assert _query(postgres, "mlflow", "select name from registered_models") == ["gan-tiny"]
    assert _query(postgres, "mlflow", "select alias from registered_model_aliases") == ["champion"]
    assert not (env["home"] / "mlflow.db").exists() and not list(env["dagster_home"].glob("*.db"))
