"""The SDK's compiled Avro encoder writes what fastavro writes, or steps aside.

Generated records for every family's newest schema, with values of the types the SDK
builds and with values it never builds (ints for doubles, bools for ints, numbers out of
range, lone surrogates, missing fields): the sealer's bytes must equal fastavro's for
every record fastavro accepts, and it must raise EncodeError where fastavro refuses.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agenttrail.events import EncodeError, default_registry, seal
from agenttrail.producer._avro_fast import compile_encoder
from agenttrail.producer._sealer import _Writer

REGISTRY = default_registry()
FAMILIES = sorted(REGISTRY.event_types)


def _value(t: Any, odd: bool) -> st.SearchStrategy[Any]:
    if isinstance(t, dict) and t.get("type") == "array":
        return st.lists(_value(t["items"], odd), max_size=4)
    if isinstance(t, dict) and t.get("type") == "record":
        return st.fixed_dictionaries({f["name"]: _value(f["type"], odd) for f in t["fields"]})
    if isinstance(t, dict):
        t = t["type"]
    if isinstance(t, list):
        return st.one_of(*[_value(x, odd) for x in t])
    base: dict[str, st.SearchStrategy[Any]] = {
        "null": st.none(),
        "string": st.text(max_size=40),
        "int": st.integers(-(2**31), 2**31 - 1),
        "long": st.integers(-(2**63), 2**63 - 1),
        "double": st.floats(allow_nan=False),
        "boolean": st.booleans(),
    }
    strategy = base.get(str(t), st.none())
    if odd:
        strategy = st.one_of(
            strategy,
            st.integers(-(2**70), 2**70),
            st.booleans(),
            st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)),
        )
    return strategy


def _records(family: str, odd: bool) -> st.SearchStrategy[dict[str, Any]]:
    schema = REGISTRY.latest(family).schema
    fields = {f["name"]: _value(f["type"], odd) for f in schema["fields"] if f["name"] != "hash"}
    strategy = st.fixed_dictionaries(fields)
    if odd:
        strategy = strategy.flatmap(
            lambda r: st.sampled_from([None, *sorted(r)]).map(
                lambda gone: {k: v for k, v in r.items() if k != gone}
            )
        )
    return strategy


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("odd", [False, True], ids=["sdk-types", "odd-values"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_sealer_writes_fastavros_bytes_or_its_error(
    family: str, odd: bool, data: st.DataObject
) -> None:
    entry = REGISTRY.latest(family)
    record = data.draw(_records(family, odd))
    try:
        expected: bytes | None = seal(entry, dict(record), "p" * 64)
    except EncodeError:
        expected = None
    writer = _Writer(entry)
    if expected is None:
        with pytest.raises(EncodeError):
            writer.seal(dict(record), "p" * 64)
    else:
        assert writer.seal(dict(record), "p" * 64) == expected


def test_every_family_but_the_nested_one_is_compiled() -> None:
    compiled = {f for f in FAMILIES if compile_encoder(REGISTRY.latest(f).schema) is not None}
    assert compiled == set(FAMILIES) - {"state_transition"}


@given(st.integers(-(2**63), 2**63 - 1))
def test_the_table_varint_of_a_long_is_the_zigzag_varint(value: int) -> None:
    from agenttrail.producer._avro_fast import _zigzag, _zigzag_long

    assert _zigzag_long(value) == _zigzag(value)
