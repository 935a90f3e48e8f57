"""Hypothesis strategies that generate personal data and secrets of every built-in kind.

Each value is built independently of the detectors (a card number gets its Luhn digit
computed here, an IBAN its mod-97 check digits), so a test using them proves the
detectors find what exists, not what they already know.
"""

from __future__ import annotations

import base64
import json
import string

from hypothesis import strategies as st

_ALNUM = string.ascii_letters + string.digits


def _luhn_digit(body: str) -> str:
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c)
        if i % 2 == 0:  # the check digit will sit to the right, so these get doubled
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


@st.composite
def cards(draw: st.DrawFn) -> str:
    length = draw(st.integers(13, 19))
    body = draw(st.sampled_from("3456")) + draw(
        st.text(string.digits, min_size=length - 2, max_size=length - 2)
    )
    number = body + _luhn_digit(body)
    sep = draw(st.sampled_from(["", " ", "-"]))
    if sep:
        number = sep.join(number[i : i + 4] for i in range(0, len(number), 4))
    return number


@st.composite
def ibans(draw: st.DrawFn) -> str:
    country = draw(st.sampled_from(["DE", "GB", "FR", "NL", "ES", "IT", "CH"]))
    bban = draw(st.text(string.ascii_uppercase[:6] + string.digits, min_size=12, max_size=26))
    rearranged = bban + country + "00"
    number = int("".join(str(int(c, 36)) for c in rearranged))
    check = 98 - number % 97
    iban = f"{country}{check:02d}{bban}"
    if draw(st.booleans()):
        iban = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return iban


emails = st.builds(
    "{}@{}.{}".format,
    st.text(_ALNUM + "._+-", min_size=1, max_size=20).filter(lambda s: s[0] not in "._+-"),
    st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=15),
    st.sampled_from(["com", "org", "io", "co.uk", "de", "example"]),
)

phones = st.one_of(
    st.builds(
        "+{} {} {} {}".format,
        st.integers(1, 99),
        st.integers(10, 999),
        st.integers(100, 9999),
        st.integers(1000, 9999),
    ),
    st.builds(
        "({}) {}-{}".format, st.integers(200, 999), st.integers(200, 999), st.integers(1000, 9999)
    ),
    st.builds(
        "{}-{}-{}".format, st.integers(200, 999), st.integers(200, 999), st.integers(1000, 9999)
    ),
)

_token = st.text(_ALNUM, min_size=24, max_size=48)
bearer_tokens = st.builds("Bearer {}".format, _token)
api_keys = st.one_of(
    st.builds("sk-{}".format, _token),
    st.builds("sk-ant-{}".format, _token),
    st.builds("ghp_{}".format, st.text(_ALNUM, min_size=36, max_size=36)),
    st.builds("xoxb-{}".format, _token),
    st.builds("sk_live_{}".format, _token),
)
aws_key_ids = st.builds(
    "AKIA{}".format, st.text(string.ascii_uppercase + string.digits, min_size=16, max_size=16)
)


def _b64(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


jwts = st.builds(
    lambda sub, sig: f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64({'sub': sub})}.{sig}",
    st.text(_ALNUM, min_size=1, max_size=20),
    st.text(_ALNUM + "-_", min_size=20, max_size=43),
)
private_keys = st.builds(
    "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----".format,
    st.text(_ALNUM + "+/", min_size=40, max_size=120),
)

pii_values = st.one_of(
    emails, phones, cards(), ibans(), bearer_tokens, api_keys, aws_key_ids, jwts, private_keys
)
"""One sensitive value of any built-in kind."""

# Words that cannot glue onto a value (they are separated by a space and hold no digits).
filler = st.text(string.ascii_letters + " ,;:!?", max_size=30)


@st.composite
def text_with_pii(draw: st.DrawFn) -> tuple[str, str]:
    """(a text that contains a sensitive value between spaces, the value)."""
    value = draw(pii_values)
    return f"{draw(filler)} {value} {draw(filler)}", value


@st.composite
def json_with_pii(
    draw: st.DrawFn, keys: st.SearchStrategy[str] | None = None
) -> tuple[object, str]:
    """(a nested JSON-like value with a sensitive value somewhere in a string, the value)."""
    text, value = draw(text_with_pii())
    keys = keys if keys is not None else st.text(string.ascii_lowercase, min_size=1, max_size=8)
    leaf: st.SearchStrategy[object] = st.one_of(
        st.integers(), st.text(string.ascii_letters, max_size=10)
    )
    tree = draw(
        st.recursive(
            leaf,
            lambda c: st.lists(c, max_size=3) | st.dictionaries(keys, c, max_size=3),
            max_leaves=6,
        )
    )
    path = draw(st.lists(st.one_of(st.integers(0, 2), keys), max_size=3))

    def place(node: object, rest: list[object]) -> object:
        if not rest:
            return text
        head = rest[0]
        if isinstance(head, int):
            items = list(node) if isinstance(node, list) else []
            items.insert(min(head, len(items)), place(None, rest[1:]))
            return items
        d = dict(node) if isinstance(node, dict) else {}
        d[str(head)] = place(d.get(str(head)), rest[1:])
        return d

    return place(tree, list(path)), value
