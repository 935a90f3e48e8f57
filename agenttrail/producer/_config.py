"""Settings of the SDK: constructor argument > ``AGENTTRAIL_*`` environment variable > default.

Plain pydantic (no pydantic-settings), so the SDK installs with kafka-python, fastavro
and pydantic only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from annotated_types import Ge, Gt
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo

from agenttrail.events import SigningKey

ENV_PREFIX = "AGENTTRAIL_"


class RecorderConfigError(ValueError):
    """A Recorder setting (argument or ``AGENTTRAIL_*`` variable) has a value it cannot take.

    The message has one line per bad setting: where the value came from, the value,
    and what is allowed.
    """


def default_spool_root() -> Path:
    """``$XDG_STATE_HOME/agenttrail/spool`` or ``~/.local/state/agenttrail/spool``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "agenttrail" / "spool"


class RecorderSettings(BaseModel):
    """Everything a Recorder can be configured with.

    Each field can be set through the environment as ``AGENTTRAIL_<FIELD>``, e.g.
    ``AGENTTRAIL_BOOTSTRAP=broker:9092``; a keyword argument wins over the variable.
    """

    model_config = ConfigDict(extra="ignore")

    def __init__(self, **given: Any) -> None:
        merged = {
            name: os.environ[ENV_PREFIX + name.upper()]
            for name in type(self).model_fields
            if name not in given and ENV_PREFIX + name.upper() in os.environ
        }
        super().__init__(**merged, **given)

    bootstrap: str | None = Field(
        default=None,
        description="Kafka bootstrap servers, host:port[,host:port]. Unset and no local stack "
        "found: the recorder records nothing.",
    )
    data: Path | None = Field(
        default=None,
        description="Data directory of a local `agenttrail up`; its up.json gives the bootstrap.",
    )
    tenant: str = Field(default="default", description="Tenant written into every event.")
    agent: str = Field(default="agent", description="Agent name written into every event.")
    agent_version: str = Field(default="0", description="Agent version written into every event.")
    topic: str = Field(default="agenttrail.events", description="Destination topic.")
    kafka_client: Literal["kafka-python", "confluent-kafka"] = Field(
        default="kafka-python",
        description="The Kafka client that delivers events: kafka-python (pure Python, "
        "installed with the SDK), or confluent-kafka (librdkafka: sends and takes acks off "
        "the agent's interpreter, about twice the sustained rate of a busy agent; "
        "pip install 'agenttrail[native]').",
    )
    schema_registry: str | None = Field(
        default=None,
        description="Schema Registry URL (Confluent API): events are framed with its ids, "
        "looked up once per schema; unset, with the packaged ids of schemas/registry.json.",
    )
    spool_dir: Path = Field(
        default_factory=default_spool_root,
        description="Root of the on-disk spool; one subdirectory per process.",
    )
    spool_fsync: Literal["always", "never"] = Field(
        default="always",
        description="always: fsync every spool write (survives power loss); never: leave it "
        "to the OS (survives a process crash).",
    )
    queue_size: int = Field(default=20_000, ge=1, description="Events queued in memory.")
    on_full: Literal["spool", "block"] = Field(
        default="spool",
        description="When the queue is full: spool the backlog to disk, or block the agent "
        "up to block_timeout_s and then spool.",
    )
    block_timeout_s: float = Field(default=1.0, ge=0)
    close_timeout_s: float = Field(default=30.0, ge=0, description="Longest close() waits.")
    retry_backoff_s: float = Field(
        default=0.5,
        gt=0,
        description="First wait before retrying the broker after an outage; doubles up to 30 s.",
    )
    redact_content: bool = Field(
        default=False,
        description="Also run the redaction detectors over message content (the messages "
        "sent to the model and its response); costs a scan per string.",
    )
    redact_detectors: bool = Field(
        default=True,
        description="Run the built-in detectors (e-mail, phone, card, IBAN, tokens, keys, "
        "JWTs, private keys) over tool arguments, results and payloads; false: only "
        "sensitive keys are redacted.",
    )
    redaction_key: SecretStr | None = Field(
        default=None,
        description="Key of the redaction placeholders' HMAC, so that hashes correlate "
        "across processes; random per recorder when unset.",
    )
    injection_policy: Literal["record", "block", "escalate"] = Field(
        default="record",
        description="What a task does with content flagged as prompt injection: record a "
        "guard event, block (raise InjectionBlocked), or escalate.",
    )
    price_file: Path | None = Field(
        default=None,
        description="A price CSV (the `agenttrail prices load` format) whose rows override "
        "the shipped prices used for spend limits.",
    )
    control: bool = Field(
        default=True,
        description="Listen for kill commands on the control topic of the Kafka bootstrap.",
    )
    control_topic: str = Field(default="agenttrail.control", description="The control topic.")
    control_public_keys: str | None = Field(
        default=None,
        description="Comma-separated base64 Ed25519 public keys; when set, only kill and "
        "lift commands signed by one of them are obeyed.",
    )
    control_catch_up_s: float = Field(
        default=5.0,
        ge=0,
        description="How long the first task waits for the commands already on the control "
        "topic (a killed scope is refused from the first task on).",
    )
    checkpoint_interval_s: float = Field(
        default=10.0,
        ge=0,
        description="Seconds between checkpoints (the producer's count and chain heads, "
        "for `agenttrail verify`) while events flow; 0: only the final one at close.",
    )
    checkpoint_key_file: Path | None = Field(
        default=None,
        description="An Ed25519 private key (PEM, e.g. from `agenttrail kill --new-key`) "
        "that signs every checkpoint; verify with `agenttrail verify --public-key`.",
    )
    result_summary_chars: int = Field(
        default=1024, ge=0, description="Tool results are summarised to this many characters."
    )
    enabled: bool = Field(default=True, description="false: record nothing at all.")


def _local_stack_info(data: Path | None) -> dict[str, Any] | None:
    """``up.json`` of a running ``agenttrail up`` in ``data`` (else ``./.agenttrail``)."""
    candidates = [data] if data is not None else [Path.cwd() / ".agenttrail"]
    for d in candidates:
        try:
            info = json.loads((d / "up.json").read_text())
            pid = int(info["pid"])
            os.kill(pid, 0)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(info, dict):
            return info
    return None


def discover_local_stack(data: Path | None) -> str | None:
    """Bootstrap address of a running ``agenttrail up`` whose ``up.json`` is in ``data``.

    Looks in ``data`` when given, else in ``./.agenttrail``. Returns None when there is no
    file or the process it names is gone.
    """
    bootstrap = (_local_stack_info(data) or {}).get("bootstrap")
    return bootstrap if isinstance(bootstrap, str) else None


def discover_local_registry(data: Path | None) -> str | None:
    """The Schema Registry a running ``agenttrail up --schema-registry URL`` names, if any."""
    url = (_local_stack_info(data) or {}).get("schema_registry")
    return url if isinstance(url, str) and url else None


def load_settings(given: Mapping[str, Any]) -> RecorderSettings:
    """``RecorderSettings`` from ``given`` arguments and the environment.

    Raises:
        RecorderConfigError: a value is not allowed; one line per bad setting, naming
            the argument or variable, the value and what is allowed (never a pydantic
            traceback).
    """
    try:
        return RecorderSettings(**given)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "?"
            field = RecorderSettings.model_fields.get(name)
            if name in given:
                source = f"Recorder({name}={given[name]!r})"
            elif field is not None:
                var = ENV_PREFIX + name.upper()
                source = f"{var}={os.environ.get(var, err.get('input'))!r}"
            else:
                source = f"Recorder({name}=...)"
            allowed = describe_allowed(field) if field is not None else err["msg"]
            lines.append(f"{source} is not allowed: {allowed}.")
        raise RecorderConfigError(" ".join(lines)) from None


def load_checkpoint_key(settings: RecorderSettings) -> SigningKey | None:
    """The key that signs checkpoints (``checkpoint_key_file``), or None when unset.

    Raises:
        RecorderConfigError: the file cannot be read or holds no Ed25519 private key;
            the message names the file and how to make a key.
    """
    path = settings.checkpoint_key_file
    if path is None:
        return None
    try:
        return SigningKey(Path(path).expanduser().read_bytes())
    except (OSError, ValueError, RuntimeError) as exc:
        raise RecorderConfigError(
            f"checkpoint_key_file={str(path)!r} (AGENTTRAIL_CHECKPOINT_KEY_FILE) cannot sign "
            f"checkpoints: {exc}. Make a key with `agenttrail kill --new-key FILE` "
            "(pip install 'agenttrail[signing]') and point the setting at FILE."
        ) from None


def describe_allowed(field: FieldInfo) -> str:
    """What a setting accepts, in words: ``an integer >= 1``, ``one of spool, block``."""
    annotation = field.annotation
    choices: tuple[Any, ...] = ()
    if get_origin(annotation) is Literal:
        choices = get_args(annotation)
        return "one of " + ", ".join(str(c) for c in choices)
    bounds = []
    for meta in field.metadata:
        if isinstance(meta, Ge):
            bounds.append(f">= {meta.ge}")
        elif isinstance(meta, Gt):
            bounds.append(f"> {meta.gt}")
    kinds = {
        int: "an integer",
        float: "a number",
        bool: "true or false (1/0, yes/no)",
        str: "text",
        Path: "a path",
    }
    args = [a for a in get_args(annotation) if a is not type(None)] or [annotation]
    kind = " or ".join(kinds.get(a, getattr(a, "__name__", str(a))) for a in args)
    return " ".join([kind, *bounds])
