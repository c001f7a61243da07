"""Real servers on 127.0.0.1 for tests: start a command, wait until its URL answers, always stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
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
def mlflow_server(folder: Path) -> Iterator[str]:
    """A real `mlflow server` with a SQLite backend and served artifacts in `folder`; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        mlflow_executable(), "server",
        "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination", str(folder / "artifacts"),
        "--serve-artifacts", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
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
