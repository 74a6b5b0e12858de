"""What the pytest suites (Tests/Interop, Tests/Wire, Tests/GalleryPython) share: finding the
built binaries, picking ports, running a server process and stopping it by its PID.

Every wait here waits for an event -- a line the server prints, a port that accepts, a process
that exits -- and its time-out only catches a hang; nothing sleeps for a guessed duration.

Each suite's conftest.py puts this directory on ``sys.path``; then ``import labgallery_testing``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pathlib
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTOS = REPO_ROOT / "Protos"


# MARK: - binaries


def build_dir(configuration: str = "release") -> pathlib.Path:
    """``.build/<configuration>``; ``$H2RPC_BUILD_DIR`` replaces the release directory."""
    if configuration == "release" and os.environ.get("H2RPC_BUILD_DIR"):
        return pathlib.Path(os.environ["H2RPC_BUILD_DIR"])
    return REPO_ROOT / ".build" / configuration


def find_binary(product: str, configurations: tuple[str, ...] = ("release",)) -> pathlib.Path:
    """The executable ``product`` of the given build configurations; of several, the most
    recently built (a stale one would test old code). A missing binary fails the test with
    the command that builds it."""
    built = [p for p in (build_dir(c) / product for c in configurations) if os.access(p, os.X_OK)]
    if built:
        return max(built, key=lambda p: p.stat().st_mtime)
    flag = "-c release " if configurations[0] == "release" else ""
    pytest.fail(f"{build_dir(configurations[0]) / product} is missing; build it with "
                f"`swift build {flag}--product {product}` (from {REPO_ROOT})", pytrace=False)


# MARK: - ports


def free_port() -> int:
    """A port free on every interface (IPv6 dual stack when available), for a server that
    cannot pick its own (prefer ``--port 0`` and reading the bound port back)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(("::", 0))
            return s.getsockname()[1]
    except OSError:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("0.0.0.0", 0))
            return s.getsockname()[1]


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a TCP connection to host:port is accepted now."""
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


# MARK: - processes


def rss_kib(pid: int) -> int:
    """The resident set size of process ``pid`` in KiB (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


class ServerProcess:
    """A server binary under test. Its stdout is read line by line on a thread (so it can never
    fill a pipe and block the server) and copied to ``<log_dir>/stdout.log``; stderr goes to
    ``<log_dir>/stderr.log``. Use it as a context manager to stop it however the test ends.

        with ServerProcess([binary, "--port", "0"], log_dir=tmp) as server:
            port = int(server.wait_for_line(r"listening on port (\\d+)").group(1))
            ...
            assert server.stop() == 0
    """

    def __init__(self, argv, *, log_dir: pathlib.Path, env: dict[str, str] | None = None):
        self.argv = [str(a) for a in argv]
        self.name = pathlib.Path(self.argv[0]).name
        log_dir = pathlib.Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = log_dir / "stdout.log"
        self.stderr_path = log_dir / "stderr.log"
        self._lines: queue.Queue[str | None] = queue.Queue()
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                            stderr=stderr, env=env)
        self._reader = threading.Thread(target=self._read_stdout, name=f"{self.name} stdout", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def _read_stdout(self) -> None:
        with open(self.stdout_path, "w") as log:
            for raw in self.process.stdout:
                line = raw.decode(errors="replace")
                log.write(line)
                log.flush()
                self._lines.put(line.rstrip("\n"))
        self.process.stdout.close()
        self._lines.put(None)  # end of output: the process closed stdout (it exited)

    def log(self) -> str:
        """What the server wrote so far, stdout then stderr."""
        text = ""
        for path in (self.stdout_path, self.stderr_path):
            if path.exists():
                text += path.read_text(errors="replace")
        return text

    def wait_for_line(self, pattern: str, timeout: float = 30) -> re.Match:
        """Waits until the server prints a line matching ``pattern`` in full (a regular
        expression); fails the test if it exits first, or if ``timeout`` (a hang) passes."""
        regex = re.compile(pattern)
        end = time.monotonic() + timeout
        seen = []
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"{self.name} printed no line matching {pattern!r} within {timeout:g} s; "
                            f"stdout: {seen!r}; stderr: {self.stderr_path.read_text()!r}", pytrace=False)
            if line is None:
                code = self.process.wait()
                pytest.fail(f"{self.name} exited ({code}) before printing a line matching {pattern!r}; "
                            f"stdout: {seen!r}; stderr: {self.stderr_path.read_text()!r}", pytrace=False)
            seen.append(line)
            match = regex.fullmatch(line)
            if match:
                return match

    def wait_for_port(self, port: int, host: str = "127.0.0.1", timeout: float = 30) -> None:
        """Waits until host:port accepts a connection (retrying each refused connect); fails the
        test if the server exits first, or if ``timeout`` (a hang) passes."""
        end = time.monotonic() + timeout
        while not port_accepts(port, host):
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited ({self.process.returncode}) before listening on {port}; "
                            f"output: {self.log()!r}", pytrace=False)
            if time.monotonic() > end:
                pytest.fail(f"{self.name} did not listen on {port} within {timeout:g} s", pytrace=False)
            # A refused connect returns at once: yield the CPU briefly before the next attempt.
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Sends ``sig`` to the server's PID (if it still runs) and waits for it to exit; returns
        its exit status. If it has not exited within ``timeout``, kills it and fails the test."""
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            self._reader.join()
            pytest.fail(f"{self.name} did not exit within {timeout:g} s of signal {sig}", pytrace=False)
        self._reader.join()
        return code

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        # However the test ended, nothing keeps running (a test that stopped it already: no-op).
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join()


# MARK: - gallery API stubs


@contextlib.contextmanager
def gallery_stubs(out: pathlib.Path):
    """grpcio stubs of Protos/labgallery/v1 generated into ``out`` (with nothing but the .proto
    files), importable while the context lasts; yields the modules keyed by proto file stem
    (``galleries``, ``galleries_grpc``, ``images``, ...)."""
    import grpc_tools
    from grpc_tools import protoc

    sources = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "labgallery" / "v1").glob("*.proto"))
    bundled = pathlib.Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/empty.proto
    rc = protoc.main(["grpc_tools.protoc", f"-I{PROTOS}", f"-I{bundled}",
                      f"--python_out={out}", f"--grpc_python_out={out}", *sources])
    assert rc == 0, f"protoc failed on {sources}"
    sys.path.insert(0, str(out))
    try:
        modules = {}
        for source in sources:
            stem = pathlib.Path(source).stem
            modules[stem] = importlib.import_module(f"labgallery.v1.{stem}_pb2")
            modules[stem + "_grpc"] = importlib.import_module(f"labgallery.v1.{stem}_pb2_grpc")
        yield modules
    finally:
        sys.path.remove(str(out))


# MARK: - PostgreSQL


class PostgresCluster:
    """A throwaway PostgreSQL cluster (``Tools/pg-cluster.sh``) in ``directory``, which must lie
    directly under /tmp or another place the ``postgres`` user can enter (the cluster runs as that
    user when we are root). fsync is off: it is for tests and benchmarks only.

        cluster = PostgresCluster(pathlib.Path(tempfile.mkdtemp(prefix="x.")))
        try:
            url = cluster.create_database("bench")
        finally:
            cluster.stop()
    """

    SCRIPT = REPO_ROOT / "Tools" / "pg-cluster.sh"

    def __init__(self, directory: pathlib.Path):
        self.directory = pathlib.Path(directory)
        self.url = self._run("start")

    def _run(self, verb: str) -> str:
        done = subprocess.run([str(self.SCRIPT), verb, str(self.directory)], capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"pg-cluster.sh {verb} failed: {done.stdout}{done.stderr}")
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""

    def start(self) -> None:
        """Starts the cluster again after ``stop`` (same port, same data)."""
        self.url = self._run("start")

    def stop(self) -> None:
        """Stops the server (fast shutdown) and waits until it is gone; a no-op when stopped."""
        self._run("stop")

    def database_url(self, name: str) -> str:
        """The URL of database ``name`` in this cluster."""
        base, _, query = self.url.partition("?")
        return base.rsplit("/", 1)[0] + "/" + name + (("?" + query) if query else "")

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Runs ``sql`` with psql (unaligned, tuples only); returns its output, rows as lines and
        columns separated by ``|``."""
        done = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", self.database_url(database),
                               "-c", sql], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"psql {sql!r} failed: {done.stderr}")
        return done.stdout.strip()

    def create_database(self, name: str) -> str:
        """Creates an empty database ``name``; returns its URL."""
        self.psql(f"CREATE DATABASE {name}")
        return self.database_url(name)
