"""Configuration the user gets wrong, and a recorder with nowhere to send: what they see.

Issue 7 items 2 and 5: limits bind whether or not events can be recorded; a recorder
that finds no destination says so once, at creation, with what to set; a bad
``AGENTTRAIL_*`` variable is one line naming the variable, its value and what is allowed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agenttrail.producer import LimitExceeded, Limits, Recorder, RecorderConfigError


@pytest.fixture
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no ``.agenttrail`` and no AGENTTRAIL_* destination."""
    for var in ("AGENTTRAIL_BOOTSTRAP", "AGENTTRAIL_DATA", "AGENTTRAIL_ENABLED"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_step_limit_binds_when_nothing_can_be_recorded(nowhere: Path) -> None:
    rec = Recorder.from_env(spool_dir=nowhere / "spool")
    assert rec.enabled is False
    calls = 0
    with pytest.raises(LimitExceeded) as raised:
        with rec.task("looping", limits=Limits(max_steps=2)) as task:
            for _ in range(5):
                with task.llm_call(model="m", messages=[{"role": "user", "content": "go"}]):
                    calls += 1
    assert calls == 2, "the third call is refused although no event is recorded"
    assert (raised.value.limit, raised.value.observed) == ("steps", 3)
    assert task.state == "limit_exceeded"
    assert not (nowhere / "spool").exists(), "a disabled recorder writes nothing"


def test_token_spend_and_wall_clock_limits_bind_when_disabled(nowhere: Path) -> None:
    rec = Recorder(enabled=False)
    with rec.task("t", limits=Limits(max_tokens=100)) as task:
        with task.llm_call(model="m", messages=[]) as call:
            call.respond("x", input_tokens=90, output_tokens=20)
        with pytest.raises(LimitExceeded, match="tokens"), task.tool("anything"):
            pass
    with rec.task("t", limits=Limits(max_spend_usd=0.01)) as task:
        with task.llm_call(model="m", messages=[]) as call:
            call.respond("x", cost_usd=0.02)
        with pytest.raises(LimitExceeded, match="spend"), task.llm_call(model="m", messages=[]):
            pass
    with rec.task("t", limits=Limits(max_wall_clock_s=1e-9)) as task:
        with pytest.raises(LimitExceeded, match="wall_clock"), task.tool("late"):
            pass


def test_a_disabled_recorder_warns_once_at_creation_with_what_to_set(
    nowhere: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="agenttrail.producer"):
        rec = Recorder.from_env()
        created = [r for r in caplog.records if r.levelno >= logging.WARNING]
        with rec.task("t") as task:
            with task.tool("x"):
                pass
        rec.close()
    assert len(created) == 1, [r.getMessage() for r in created]
    message = created[0].getMessage()
    assert "records nothing" in message
    assert "AGENTTRAIL_BOOTSTRAP" in message and "agenttrail up" in message
    later = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(later) == 1, "using the disabled recorder adds no further warnings"


def test_disabling_on_purpose_is_not_warned_about(
    nowhere: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="agenttrail.producer"):
        Recorder(enabled=False).close()
    assert not caplog.records


@pytest.mark.parametrize(
    ("var", "value", "allowed"),
    [
        ("AGENTTRAIL_QUEUE_SIZE", "abc", "an integer >= 1"),
        ("AGENTTRAIL_QUEUE_SIZE", "0", "an integer >= 1"),
        ("AGENTTRAIL_ON_FULL", "drop", "one of spool, block"),
        ("AGENTTRAIL_SPOOL_FSYNC", "sometimes", "one of always, never"),
        ("AGENTTRAIL_RETRY_BACKOFF_S", "-1", "a number > 0"),
        ("AGENTTRAIL_ENABLED", "perhaps", "true or false"),
    ],
)
def test_a_bad_environment_variable_is_one_line_naming_it(
    nowhere: Path, monkeypatch: pytest.MonkeyPatch, var: str, value: str, allowed: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(RecorderConfigError) as raised:
        Recorder.from_env()
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{var}={value!r} is not allowed: {allowed}"), message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__, (
        "no pydantic traceback is chained to it"
    )


def test_a_bad_argument_is_named_as_the_argument(nowhere: Path) -> None:
    with pytest.raises(RecorderConfigError, match=r"^Recorder\(queue_size='many'\) is not"):
        Recorder(queue_size="many")


def test_several_bad_settings_are_all_named(nowhere: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTTRAIL_QUEUE_SIZE", "abc")
    monkeypatch.setenv("AGENTTRAIL_ON_FULL", "drop")
    with pytest.raises(RecorderConfigError) as raised:
        Recorder.from_env()
    assert "AGENTTRAIL_QUEUE_SIZE='abc'" in str(raised.value)
    assert "AGENTTRAIL_ON_FULL='drop'" in str(raised.value)


def test_an_unknown_kafka_client_is_named_with_the_choices(
    nowhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTTRAIL_KAFKA_CLIENT", "librdkafka")
    with pytest.raises(RecorderConfigError) as raised:
        Recorder(bootstrap="127.0.0.1:1", spool_dir=nowhere / "spool")
    assert str(raised.value) == (
        "AGENTTRAIL_KAFKA_CLIENT='librdkafka' is not allowed: one of kafka-python, confluent-kafka."
    )


def test_the_kafka_client_setting_chooses_the_exporter(
    nowhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("confluent_kafka")
    monkeypatch.setenv("AGENTTRAIL_CONTROL", "false")  # no control topic to wait for
    from agenttrail.producer._exporter import KafkaExporter
    from agenttrail.producer._native_exporter import NativeKafkaExporter

    chosen = {}
    for client in ("kafka-python", "confluent-kafka"):
        monkeypatch.setenv("AGENTTRAIL_KAFKA_CLIENT", client)
        rec = Recorder(bootstrap="127.0.0.1:1", spool_dir=nowhere / client,
                       checkpoint_interval_s=0)  # fmt: skip
        pipeline = rec._pipeline
        assert pipeline is not None
        chosen[client] = type(pipeline.exporter.inner)
        rec.close(timeout=0.5)
    assert chosen == {"kafka-python": KafkaExporter, "confluent-kafka": NativeKafkaExporter}
    # Either exporter names the same destination, so either replays the other's spool.
    assert (
        KafkaExporter("h:1", "t").destination
        == NativeKafkaExporter("h:1", "t").destination
        == "kafka://h:1/t"
    )


def test_the_native_client_missing_says_what_to_install(
    nowhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agenttrail.producer._native_exporter as native

    monkeypatch.setattr(native, "confluent_kafka_available", lambda: False)
    with pytest.raises(RecorderConfigError) as raised:
        Recorder(bootstrap="127.0.0.1:1", kafka_client="confluent-kafka", spool_dir=nowhere)
    message = str(raised.value)
    assert message.startswith("kafka_client='confluent-kafka' (AGENTTRAIL_KAFKA_CLIENT): ")
    assert "pip install 'agenttrail[native]'" in message
