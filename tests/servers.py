"""Real servers on 127.0.0.1 for tests: start a command, wait until its URL answers, always stop it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

#: seconds a server may take to answer before the test fails (MLflow imports take minutes on a loaded machine)
START_TIMEOUT_S = 240


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def mlflow_executable() -> str:
    """The `mlflow` command of the interpreter that runs the tests."""
    return str(Path(sys.executable).with_name("mlflow"))


@contextlib.contextmanager
def running(
    command: list[str], ready_url: str, log_path: Path, env: dict | None = None, cwd: Path | None = None
) -> Iterator[subprocess.Popen]:
    """Run `command` (in `cwd`) in its own process group until the block ends; yield once `ready_url` answers HTTP 200.

    `env` entries set to None are removed from the inherited environment.
    """
    # Servers start helpers by name (mlflow models serve execs uvicorn): the venv's bin comes first.
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    environment = {key: value for key, value in environment.items() if value is not None}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=cwd, start_new_session=True
        )
        try:
            wait_until_ready(process, ready_url, log_path)
            yield process
        finally:
            stop(process)


def wait_until_ready(process: subprocess.Popen, url: str, log_path: Path) -> None:
    """Poll `url` until it answers 200; fail with the server's log if it exits or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_tail(log_path)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {START_TIMEOUT_S} s:\n{log_tail(log_path)}")


def stop(process: subprocess.Popen) -> None:
    """Stop the server's whole process group (its workers too): SIGTERM, then SIGKILL after 3 s.

    MLflow's servers take 15 s or more to finish a graceful shutdown; a test store needs none.
    """
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=3)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def log_tail(path: Path, lines: int = 40) -> str:
    """The last lines of a server log."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


@contextlib.contextmanager
def mlflow_server(folder: Path, backend_uri: str | None = None, workers: int = 1) -> Iterator[str]:
    """A real `mlflow server` (SQLite backend in `folder` unless `backend_uri`) with served artifacts; yields its URL.

    One worker by default: it still serves requests concurrently (a thread pool). With `--workers 2` on this
    machine under a load of ~30, uvicorn's children died and were restarted in a loop ("Child process died").
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        mlflow_executable(), "server",
        "--backend-store-uri", backend_uri or f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination", str(folder / "artifacts"),
        "--serve-artifacts", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip
    with running(command, f"{url}/health", folder / "server.log"):
        yield url


@contextlib.contextmanager
def model_server(model_uri: str, tracking_uri: str, folder: Path) -> Iterator[str]:
    """`mlflow models serve -m MODEL_URI --env-manager local` on a free port, run in `folder`; yields its URL.

    Nothing points it at a perfpred checkout (no PYTHONPATH, no PERFPRED_ROOT): the model brings its own code.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        mlflow_executable(), "models", "serve", "-m", model_uri, "--env-manager", "local",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {"MLFLOW_TRACKING_URI": tracking_uri, "PYTHONPATH": None, "PERFPRED_ROOT": None, "PERFPRED_PREDICTOR_CACHE": None}
    with running(command, f"{url}/ping", folder / "serve.log", env=env, cwd=folder):
        yield url


def postgres_bin(program: str) -> str | None:
    """The path of a PostgreSQL server program (Debian keeps them in /usr/lib/postgresql/<version>/bin), or None."""
    found = shutil.which(program)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{program}"), key=lambda p: int(p.parts[-3]))
    return str(versions[-1]) if versions else None


def _as_postgres_user(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root: CI runs as root, so the server runs as Debian's `postgres` user.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextlib.contextmanager
def postgres(database: str = "mlflow") -> Iterator[str]:
    """A real PostgreSQL server in a temporary folder, on a free port of 127.0.0.1; yields a SQLAlchemy URI."""
    initdb, pg_ctl = postgres_bin("initdb"), postgres_bin("pg_ctl")
    if not (initdb and pg_ctl):
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (.ci/run does it)")
    # Not under pytest's tmp_path: that folder is private to root, and the server runs as `postgres`.
    folder = Path(tempfile.mkdtemp(prefix="perfpred-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    data, log, port = folder / "data", folder / "postgres.log", free_port()
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    try:
        subprocess.run(_as_postgres_user([initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]),
                       check=True, capture_output=True)
        subprocess.run(_as_postgres_user([pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"]),
                       check=True, capture_output=True)
        try:
            import psycopg

            with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True) as admin:
                admin.execute(f"CREATE DATABASE {database}")
            yield f"postgresql://postgres@127.0.0.1:{port}/{database}"
        finally:
            subprocess.run(_as_postgres_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]), capture_output=True)
    except subprocess.CalledProcessError as error:
        raise RuntimeError(f"PostgreSQL did not start ({error.cmd[-1]}): {error.stderr.decode()[-2000:]}\n{log_tail(log)}") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _ray_executable() -> str:
    return str(Path(sys.executable).with_name("ray"))


@contextlib.contextmanager
def ray_cluster(workers: int = 1, cpus_per_node: int = 1) -> Iterator[str]:
    """A real Ray cluster on 127.0.0.1: a head node and `workers` worker nodes (`ray start --block` each); yields
    the head's address. Each node is stopped by its own process group: `ray stop` would stop every Ray on the machine."""
    # Ray's sockets live under its temp dir, whose path must stay short (AF_UNIX paths: 107 bytes).
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-"))
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--block", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus_per_node}", "--disable-usage-stats",
              "--object-store-memory=200000000"]  # 200 MB of /dev/shm, not Ray's default 30 % of the machine's memory
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "RAY_USAGE_STATS_ENABLED": "0"}
    nodes: list[subprocess.Popen] = []
    try:
        head = [_ray_executable(), "start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp_dir}", *common]
        nodes.append(_start_node(head, temp_dir / "head.log", environment))
        _wait_for_port(port, nodes[0], temp_dir / "head.log")
        for index in range(workers):
            worker = [_ray_executable(), "start", f"--address={address}", *common]
            nodes.append(_start_node(worker, temp_dir / f"worker-{index}.log", environment))
        _wait_for_nodes(address, 1 + workers, temp_dir)
        yield address
    finally:
        for node in reversed(nodes):
            stop(node)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _start_node(command: list[str], log_path: Path, environment: dict) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True)


def _wait_for_port(port: int, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ray head exited with {process.returncode}:\n{log_tail(log_path)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.5)
    raise TimeoutError(f"ray head did not listen on {port} within {START_TIMEOUT_S} s:\n{log_tail(log_path)}")


def _wait_for_nodes(address: str, count: int, temp_dir: Path) -> None:
    """Wait until `count` nodes are alive, asked from a fresh interpreter (this one must not join the cluster)."""
    probe = ("import ray, time, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
             "deadline = time.monotonic() + float(sys.argv[3]); "
             "alive = lambda: sum(n['Alive'] for n in ray.nodes()); "
             "[time.sleep(0.5) for _ in iter(lambda: alive() >= int(sys.argv[2]) or time.monotonic() > deadline, True)]; "
             "sys.exit(0 if alive() >= int(sys.argv[2]) else 1)")
    done = subprocess.run([sys.executable, "-c", probe, address, str(count), str(START_TIMEOUT_S)], capture_output=True, text=True)
    if done.returncode != 0:
        logs = "\n".join(log_tail(path, 15) for path in sorted(temp_dir.glob("*.log")))
        raise RuntimeError(f"the Ray cluster at {address} did not reach {count} nodes:\n{done.stderr[-2000:]}\n{logs}")
