"""A throwaway PostgreSQL cluster on 127.0.0.1 for tests and the demo.

Runs Debian's server binaries as the `postgres` user (via runuser) when started
as root, in a data directory that user owns, on a private port; trust auth on
loopback only. `stop()` removes nothing but the server process; the caller owns
the directory.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import typing as t
from pathlib import Path

BILLING_EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS billing_events (
    id bigserial PRIMARY KEY,
    external_customer_id text NOT NULL,
    event_type text NOT NULL,
    occurred_at timestamptz NOT NULL,
    region text,
    model text,
    tokens int
);
"""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_bin_dir() -> Path:
    """The folder of PostgreSQL's server programs: $MONK_PG_BIN, else Debian's newest
    /usr/lib/postgresql/*/bin, else where initdb is on the PATH."""
    on_path = shutil.which("initdb")
    candidates = [
        os.environ.get("MONK_PG_BIN", ""),
        *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True),
        str(Path(on_path).parent) if on_path else "",
    ]
    for folder in candidates:
        if folder and (Path(folder) / "initdb").is_file():
            return Path(folder)
    msg = "PostgreSQL server binaries not found: run scripts/setup --postgres"
    raise RuntimeError(msg)


class PgCluster:
    """initdb + pg_ctl start/stop, and psql for SQL."""

    def __init__(
        self,
        base_dir: Path,
        port: int | None = None,
        database: str = "billing",
        settings: t.Sequence[str] = (),
    ) -> None:
        """A cluster in `base_dir`; `settings` are server settings ('wal_level=logical')."""
        self.settings = settings
        self.base_dir = base_dir
        self.data_dir = base_dir / "pgdata"
        self.port = port or free_port()
        self.database = database
        self.user = "postgres"
        self.bin = server_bin_dir()
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str, **kwargs: t.Any) -> subprocess.CompletedProcess:
        command = [*args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)

    def start(self) -> PgCluster:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            shutil.chown(self.base_dir, "postgres", "postgres")
        self._let_postgres_in()
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            self.user,
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.base_dir / "server.log"),
            "-w",
            "-o",
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.base_dir} -c fsync=off"
            + "".join(f" -c {setting}" for setting in self.settings),
            "start",
        )
        self.psql("CREATE DATABASE " + self.database, database="postgres")
        self.psql(BILLING_EVENTS_DDL)
        return self

    def _let_postgres_in(self) -> None:
        """Let the postgres user traverse to the cluster (again: a pytest session that
        starts meanwhile makes its temporary root private)."""
        if not self._as_postgres:
            return
        for parent in [self.base_dir, *self.base_dir.parents]:
            if parent == Path("/"):
                break
            parent.chmod(parent.stat().st_mode | 0o011)

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._let_postgres_in()
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "stop")

    def psql(self, sql: str, database: str | None = None) -> str:
        """Run SQL; return unaligned, tuples-only output (fields split by '|')."""
        done = subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database or self.database,
                "-v",
                "ON_ERROR_STOP=1",
                "-qAt",
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip()

    def seed(self, rows: int, customers: int = 7) -> None:
        """Insert `rows` billing events over the last days, for `customers` customers."""
        self.psql(
            "INSERT INTO billing_events "
            "(external_customer_id, event_type, occurred_at, region, model, tokens) "
            f"SELECT 'cus_' || (g % {customers}), "
            "CASE WHEN g % 3 = 0 THEN 'image_generated' ELSE 'tokens_used' END, "
            "now() - interval '30 days' + g * interval '1 second', "
            "(ARRAY['eu-west','us-east','ap-south'])[1 + g % 3], "
            "(ARRAY['monk-s','monk-m','monk-l'])[1 + g % 3], "
            f"1 + (g * 37) % 1000 FROM generate_series(1, {rows}) AS g"
        )

    def totals(self) -> dict[str, tuple[int, int]]:
        """external_customer_id -> (events, SUM(tokens)) in the source table."""
        out = self.psql(
            "SELECT external_customer_id, count(*), sum(tokens) "
            "FROM billing_events GROUP BY 1 ORDER BY 1"
        )
        return {c: (int(n), int(s)) for c, n, s in (line.split("|") for line in out.splitlines())}

    def env(self) -> dict[str, str]:
        """TAP_POSTGRES_* connection settings for Meltano."""
        return {
            "TAP_POSTGRES_HOST": "127.0.0.1",
            "TAP_POSTGRES_PORT": str(self.port),
            "TAP_POSTGRES_USER": self.user,
            "TAP_POSTGRES_PASSWORD": "trust-auth-on-loopback",
            "TAP_POSTGRES_DATABASE": self.database,
        }
