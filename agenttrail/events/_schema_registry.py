"""A client of a Confluent-compatible Schema Registry, and the subjects agenttrail uses.

In production the schema id in bytes 1-4 of every message is the id a Schema Registry
gave the writer's schema, not the id of ``schemas/registry.json``: an organisation's
registry already holds other teams' ids, and a registry-aware reader (Confluent's
``AvroDeserializer``, ClickHouse's ``AvroConfluent``) trusts that id. Subjects follow
TopicRecordNameStrategy, ``<topic>-<record full name>`` (``agenttrail.events-agenttrail.
events.LlmCall``), one per family, so the five records of the one topic do not fail
each other's compatibility check.

The client speaks the Confluent REST API (Confluent, Karapace, Redpanda and Apicurio's
compatibility API answer it) with the standard library only, because the SDK uses it
and must stay light. It is thread-safe: every call is one HTTP request and holds no
state. Basic credentials may sit in the URL (``https://user:secret@registry:8081``);
they are sent as an ``Authorization`` header and never appear in messages.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from agenttrail.events._errors import EventError
from agenttrail.events._registry import SchemaEntry

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
COMPATIBILITY = "BACKWARD_TRANSITIVE"
"""The compatibility level of every agenttrail subject (what ``schemas check`` enforces)."""

# Confluent error codes (also returned by Karapace and Redpanda).
SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403
SUBJECT_CONFIG_NOT_FOUND = 40408


class SchemaRegistryError(EventError):
    """A Schema Registry refused a request; the message says which and why.

    Attributes:
        status: the HTTP status (0 when no answer came).
        error_code: the registry's ``error_code`` when it sent one.
    """

    def __init__(self, message: str, status: int = 0, error_code: int | None = None):
        super().__init__(message)
        self.status = status
        self.error_code = error_code


class SchemaRegistryUnavailable(SchemaRegistryError):
    """The registry did not answer, or answered 5xx: retry later, nothing is wrong with the data."""


def record_full_name(schema: dict[str, Any]) -> str:
    """The full name of an Avro record schema (``namespace.name``)."""
    name = str(schema["name"])
    namespace = schema.get("namespace")
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


def subject_for(topic: str, entry: SchemaEntry) -> str:
    """The TopicRecordNameStrategy subject of a family's schema on ``topic``."""
    return f"{topic}-{record_full_name(entry.schema)}"


def schema_text(entry: SchemaEntry) -> str:
    """The schema string agenttrail registers and looks up (compact JSON of the .avsc file).

    Always the same string for the same file, so a lookup finds what a register stored.
    """
    return json.dumps(entry.schema, separators=(",", ":"), ensure_ascii=False)


class SchemaRegistryClient:
    """Calls one Schema Registry over HTTP(S).

    Args:
        url: base URL, e.g. ``http://schema-registry:8081``; userinfo becomes basic auth.
        timeout: seconds per request.

    Every method blocks for at most ``timeout`` seconds and raises
    :class:`SchemaRegistryUnavailable` when no answer came (or a 5xx),
    :class:`SchemaRegistryError` when the registry refused the request.
    """

    def __init__(self, url: str, timeout: float = 10.0):
        parts = urllib.parse.urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SchemaRegistryError(
                f"Schema Registry URL {redact_url(url)!r} is not an http(s) URL; "
                "pass one like http://schema-registry:8081."
            )
        self._auth: str | None = None
        if parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            secret = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{secret}".encode()).decode("ascii")
            self._auth = f"Basic {token}"
        netloc = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        if ":" in parts.hostname:  # an IPv6 literal keeps its brackets
            netloc = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port else "")
        self.url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"SchemaRegistryClient({self.url!r})"

    # -- the API ------------------------------------------------------------------------

    def lookup(self, subject: str, schema: str) -> int | None:
        """The id of ``schema`` under ``subject``, or None when it is not registered there."""
        answer = self._call(
            "POST", f"/subjects/{_quote(subject)}", {"schema": schema}, missing_ok=True
        )
        return None if answer is None else int(answer["id"])

    def register(self, subject: str, schema: str) -> int:
        """Register ``schema`` under ``subject`` (idempotent) and return its id.

        Raises:
            SchemaRegistryError: e.g. 409 when the subject's compatibility rule refuses it.
        """
        answer = self._call("POST", f"/subjects/{_quote(subject)}/versions", {"schema": schema})
        return int(answer["id"])

    def schema_by_id(self, schema_id: int) -> str | None:
        """The schema string with this id, or None when the registry has no such id."""
        answer = self._call("GET", f"/schemas/ids/{int(schema_id)}", missing_ok=True)
        return None if answer is None else str(answer["schema"])

    def subjects_of(self, schema_id: int) -> list[tuple[str, int]]:
        """``(subject, version)`` pairs that hold the schema with this id."""
        answer = self._call("GET", f"/schemas/ids/{int(schema_id)}/versions", missing_ok=True)
        return [(str(a["subject"]), int(a["version"])) for a in answer or []]

    def compatibility(self, subject: str) -> str | None:
        """The subject's own compatibility level, or None when it has none set."""
        answer = self._call("GET", f"/config/{_quote(subject)}", missing_ok=True)
        if answer is None:
            return None
        level = answer.get("compatibilityLevel", answer.get("compatibility"))
        return None if level is None else str(level)

    def set_compatibility(self, subject: str, level: str) -> None:
        """Set the subject's compatibility level."""
        self._call("PUT", f"/config/{_quote(subject)}", {"compatibility": level})

    # -- transport ----------------------------------------------------------------------

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, missing_ok: bool = False
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Accept", CONTENT_TYPE)
        if data is not None:
            request.add_header("Content-Type", CONTENT_TYPE)
        if self._auth:
            request.add_header("Authorization", self._auth)
        where = f"{method} {self.url}{path}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            status, code, message = exc.code, None, exc.reason
            try:
                detail = json.loads(exc.read() or b"{}")
                code = detail.get("error_code")
                message = detail.get("message") or message
            except (ValueError, AttributeError, OSError):
                pass
            if status == 404 and missing_ok:
                return None
            if status >= 500:
                raise SchemaRegistryUnavailable(
                    f"Schema Registry answered {status} to {where}: {message}. "
                    "It is unavailable; retry when it is healthy.",
                    status,
                    code,
                ) from exc
            raise SchemaRegistryError(
                f"Schema Registry refused {where}: {status} {message}"
                + (f" (error_code {code})" if code else ""),
                status,
                code,
            ) from exc
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SchemaRegistryUnavailable(
                f"Schema Registry at {self.url} did not answer {method} {path}: {reason}. "
                "Check that it runs and the URL is right."
            ) from exc
        try:
            return json.loads(raw) if raw else {}
        except ValueError as exc:
            raise SchemaRegistryError(
                f"Schema Registry answered {where} with something that is not JSON "
                f"({raw[:80]!r}); is {self.url} a Schema Registry?"
            ) from exc


def _quote(subject: str) -> str:
    return urllib.parse.quote(subject, safe="")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc}"))
