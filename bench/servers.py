"""Real servers for bench/: a throwaway PostgreSQL and Redis, and Warden's server arrangements.

PostgreSQL and Redis come from Debian's packages (postgresql, redis-server), started on
free loopback ports in a temporary folder and removed afterwards, unless
BENCH_DATABASE_URL and BENCH_REDIS_URL name servers to use. PostgreSQL runs with its
defaults (fsync on): a commit costs what it costs in production.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

# The ways to serve Warden that bench/ compares. `web` answers the API; `live` (if any)
# holds websockets and the agents' long polls (README: Running in production).
ARRANGEMENTS = {
    "sync": (
        "gunicorn config.wsgi:application -c config/gunicorn.py --worker-class sync "
        "--workers {workers}"
    ),
    "uvicorn": (
        "gunicorn config.asgi:application -c config/gunicorn.py "
        "--worker-class uvicorn_worker.UvicornWorker --workers {workers}"
    ),
}
LIVE_COMMAND = (
    "gunicorn config.asgi:application --worker-class uvicorn_worker.UvicornWorker --workers 1"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def as_postgres(args: Sequence[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user when root."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


class Control:
    """Stopping and starting a throwaway PostgreSQL and Redis (bench/bench_faults.py)."""

    def __init__(self, pg_bin: Path, work: Path, pg_port: int, redis_port: int) -> None:
        self.pg_bin, self.work, self.pg_port, self.redis_port = pg_bin, work, pg_port, redis_port
        self.redis: subprocess.Popen | None = None

    def pg_ctl(self, *args: str) -> None:
        command = [str(self.pg_bin / "pg_ctl"), "-D", str(self.work / "pg"), "-w", *args]
        subprocess.run(as_postgres(command), check=True, stdout=subprocess.DEVNULL)

    def start_postgres(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.pg_port} -k {self.work}"
        # More of PostgreSQL's own settings for a diagnosis, such as
        # BENCH_POSTGRES_OPTIONS="-c log_autovacuum_min_duration=0 -c log_checkpoints=on"
        # (with BENCH_POSTGRES_LOG=file to keep the log).
        options += " " + os.environ.get("BENCH_POSTGRES_OPTIONS", "")
        self.pg_ctl("-l", str(self.work / "pg.log"), "-o", options, "start")

    def stop_postgres(self, mode: str = "fast") -> None:
        self.pg_ctl("-m", mode, "stop")

    def start_redis(self) -> None:
        self.redis = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port), "--save", ""],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.redis_port), timeout=1),
            ):
                return
            time.sleep(0.05)

    def stop_redis(self) -> None:
        if self.redis is not None and self.redis.poll() is None:
            self.redis.terminate()
            self.redis.wait(timeout=10)


@dataclass
class Databases:
    database_url: str
    redis_url: str
    control: Control | None = None  # None for servers BENCH_*_URL name

    # The servers' main processes when bench/ started them (for their CPU: tree_cpu).
    @property
    def postgres_pid(self) -> int | None:
        if self.control is None:
            return None
        pid_file = self.control.work / "pg" / "postmaster.pid"
        return int(pid_file.read_text().split()[0]) if pid_file.exists() else None

    @property
    def redis_pid(self) -> int | None:
        redis = self.control.redis if self.control is not None else None
        return redis.pid if redis is not None else None


def tree_cpu(pid: int | None) -> float:
    """CPU seconds so far of a process and its children, the ones that ended included
    (a PostgreSQL backend, a gunicorn worker): 0 when there is no such process."""
    import psutil  # here: .ci/smoke loads this module with a Python that may lack it

    if pid is None:
        return 0.0
    try:
        parent = psutil.Process(pid)
        times = parent.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        children = parent.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    for child in children:
        try:
            times = child.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


@contextlib.contextmanager
def throwaway_servers(name: str = "warden_bench") -> Iterator[Databases]:
    """PostgreSQL and Redis for one benchmark run (or the ones BENCH_*_URL name)."""
    if os.environ.get("BENCH_DATABASE_URL") and os.environ.get("BENCH_REDIS_URL"):
        yield Databases(os.environ["BENCH_DATABASE_URL"], os.environ["BENCH_REDIS_URL"])
        return
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not bins or not shutil.which("redis-server"):
        raise SystemExit(
            "bench needs PostgreSQL and Redis: apt-get install postgresql redis-server "
            "(or set BENCH_DATABASE_URL and BENCH_REDIS_URL)"
        )
    pg_bin = bins[-1]
    work = Path(tempfile.mkdtemp(prefix="warden-bench-"))
    os.chmod(work, 0o777)
    control = Control(pg_bin, work, free_port(), free_port())
    subprocess.run(
        as_postgres(
            [str(pg_bin / "initdb"), "-D", str(work / "pg"), "-A", "trust", "-U", "postgres"]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    control.start_postgres()
    control.start_redis()
    try:
        subprocess.run(
            as_postgres(
                [
                    str(pg_bin / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(control.pg_port),
                    "-U",
                    "postgres",
                    name,
                ]
            ),
            check=True,
        )
        yield Databases(
            f"postgres://postgres@127.0.0.1:{control.pg_port}/{name}",
            f"redis://127.0.0.1:{control.redis_port}/0",
            control,
        )
    finally:
        if os.environ.get("BENCH_POSTGRES_LOG"):
            shutil.copy(work / "pg.log", os.environ["BENCH_POSTGRES_LOG"])
        control.stop_redis()
        with contextlib.suppress(subprocess.CalledProcessError):
            control.stop_postgres()
        shutil.rmtree(work, ignore_errors=True)


def warden_env(databases: Databases, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a production Warden process for the benchmark."""
    # Imported here, as psutil is: .ci/smoke loads this module with its own Python.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    signing_key = data_dir / "bench-audit-signing-key.pem"
    if not signing_key.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        signing_key.write_bytes(
            Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return {
        **os.environ,
        "WARDEN_ENV": "production",
        "SECRET_KEY": "bench-only-secret-key-" + "x" * 32,
        "WARDEN_AUDIT_KEY": "bench-only-audit-key-" + "y" * 32,
        "WARDEN_AUDIT_SIGNING_KEY": str(signing_key),
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
        "DATABASE_URL": databases.database_url,
        "REDIS_URL": databases.redis_url,
        "WARDEN_DATA_DIR": str(data_dir),
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


def manage(env: dict[str, str], *args: str) -> str:
    """Run `manage.py args` with `env`; its output, or exit naming what failed."""
    result = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def register(env: dict[str, str], prefix: str, count: int) -> list[list[str]]:
    """COUNT hosts named PREFIX-00001 ... through Warden's add_host: [[name, key], ...]."""
    result = subprocess.run(
        [PYTHON, "bench/setup_hosts.py", prefix, str(count)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def render_template(template: str, **values: str) -> str:
    """${NAME} replaced for the names given, as the nginx image's envsubst does; nginx's own
    $variables are left alone."""
    return re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), template)


def front_command(
    root: Path, web_port: int, live_port: int, port: int, workers: int = 2, connections: int = 16000
) -> list[str]:
    """nginx's argv (Debian's package) serving deploy/nginx/warden.conf.template on `port`
    in front of web and live, its configuration and temporary files written under `root`."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("the production arrangement's front needs nginx: apt-get install nginx")
    for sub in ("client", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(root / sub, 0o777)  # nginx's workers drop root for nobody
    template = (ROOT / "deploy" / "nginx" / "warden.conf.template").read_text()
    (root / "warden.conf").write_text(
        render_template(
            template,
            WEB_UPSTREAM=f"127.0.0.1:{web_port}",
            LIVE_UPSTREAM=f"127.0.0.1:{live_port}",
            LISTEN=f"127.0.0.1:{port}",
        )
    )
    temp = " ".join(
        f"{sub}_temp_path {root / sub};" for sub in ("proxy", "fastcgi", "uwsgi", "scgi")
    )
    (root / "nginx.conf").write_text(
        f"daemon off; worker_processes {workers}; worker_rlimit_nofile {connections + 4000};\n"
        f"pid {root / 'nginx.pid'}; error_log {root / 'error.log'} warn;\n"
        f"events {{ worker_connections {connections}; }}\n"
        f"http {{ access_log off; client_body_temp_path {root / 'client'}; {temp}\n"
        f"  include {root / 'warden.conf'}; }}\n"
    )
    return [nginx, "-c", str(root / "nginx.conf"), "-p", str(root)]


class Front:
    """nginx in front of web and live, as in production (front_command)."""

    def __init__(self, work: Path, web_port: int, live_port: int) -> None:
        self.port = free_port()
        root = work / "nginx"
        command = front_command(root, web_port, live_port, self.port)
        self.log = root / "error.log"
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 20) -> None:
        """Until nginx answers /healthz from web through itself."""
        deadline = time.monotonic() + timeout
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/healthz", headers={"Host": "localhost"}
        )
        while True:
            try:
                with urllib.request.urlopen(request, timeout=2):
                    return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    log = self.log.read_text()[-3000:] if self.log.exists() else ""
                    raise SystemExit(f"nginx did not start:\n{log}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


class ConstantFront:
    """nginx answering every request with a constant: what wrk alone can drive here."""

    def __init__(self, work: Path) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        root = work / "nginx-constant"
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        temp = " ".join(
            f"{sub}_temp_path {root / sub};"
            for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (root / "nginx.conf").write_text(
            f"daemon off; worker_processes 1; pid {root / 'nginx.pid'};\n"
            f"error_log {root / 'error.log'} warn; events {{ worker_connections 1024; }}\n"
            f"http {{ access_log off; {temp}\n"
            f"  server {{ listen 127.0.0.1:{self.port}; client_max_body_size 3m;\n"
            '    location / { default_type application/json; return 200 \'{"status":"ok"}\'; }\n'
            "  } }\n"
        )
        self.process = subprocess.Popen(
            [nginx, "-c", str(root / "nginx.conf"), "-p", str(root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


class Server:
    """One server command (gunicorn, qcluster ...) running until stopped."""

    def __init__(
        self,
        name: str,
        command: str,
        env: dict[str, str],
        port: int | None,
        cpus: str | None = None,
    ) -> None:
        """`cpus` (taskset's list, e.g. "0"): the cores the command may run on."""
        self.name, self.port = name, port
        self.log = Path(env["WARDEN_DATA_DIR"]) / f"{name}.log"
        args = command.split()
        if args[0] == "gunicorn":
            args = [PYTHON, "-m", "gunicorn", *args[1:], "--bind", f"127.0.0.1:{port}"]
            args += ["--backlog", "4096"]
        elif args[0] == "manage.py":
            args = [PYTHON, *args]
        if cpus is not None:
            args = ["taskset", "-c", cpus, *args]
        self.process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, path: str = "/healthz", timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{self.port}{path}", headers={"Host": "localhost"}
                )
                with urllib.request.urlopen(request, timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"{self.name} did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def prepare_database(env: dict[str, str], *, collectstatic: bool = False) -> None:
    """A new database as a deployment's is: migrated, with an approved model."""
    manage(env, "migrate", "--noinput")
    if collectstatic:  # production's manifest storage renders no page without it
        manage(env, "collectstatic", "--noinput", "-v0")
    manage(env, "train_severity_model", "--approve")


@dataclass
class Stack:
    """Warden as production runs it (README: Running in production): sync web, live for
    websockets and long polls, the cluster, and nginx in front of both."""

    web: Server
    live: Server | None
    qcluster: Server | None
    front: Front

    def pids(self) -> dict[str, int]:
        started = {"web": self.web, "live": self.live, "qcluster": self.qcluster}
        pids = {role: server.process.pid for role, server in started.items() if server}
        return {**pids, "nginx": self.front.process.pid}


@contextlib.contextmanager
def production_stack(
    env: dict[str, str],
    work: Path,
    *,
    web_workers: int = 4,
    live: bool = True,
    qcluster: bool = True,
    warm: bool = False,
) -> Iterator[Stack]:
    """The servers started, answering through nginx, and all stopped on the way out.

    `warm`: every web worker has served a request first. Each imports Django's URLconf at
    its first (seconds of CPU), which a deployment's readiness checks do before traffic."""
    web = Server("web", ARRANGEMENTS["sync"].format(workers=web_workers), env, free_port())
    live_server = Server("live", LIVE_COMMAND, env, free_port()) if live else None
    cluster = Server("qcluster", "manage.py qcluster", env, None) if qcluster else None
    front = None
    try:
        web.wait_ready()
        if live_server:
            live_server.wait_ready()
        if warm:
            with ThreadPoolExecutor(2 * web_workers) as pool:
                list(pool.map(lambda _: web.wait_ready(), range(4 * web_workers)))
        assert web.port is not None
        front = Front(work, web.port, live_server.port if live_server else web.port)
        front.wait_ready()
        yield Stack(web, live_server, cluster, front)
    finally:
        if front:
            front.stop()
        for server in (cluster, live_server, web):
            if server:
                server.stop()
