"""Pure helpers shared by the dialects (``httpdns/dialects/base.py``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from httpdns.dialects import base
from httpdns.errors import BadRequest
from registry.errors import ValidationError
from registry.validation import dns_name

LABEL = st.from_regex(r"[A-Za-z0-9_-]{0,64}", fullmatch=True)
NAMES = st.one_of(
    st.lists(LABEL, min_size=1, max_size=5).map(".".join),
    st.lists(LABEL, min_size=1, max_size=5).map(lambda ls: ".".join(ls) + "."),
    st.text(max_size=40),
)


@given(NAMES)
def test_qname_agrees_with_the_registry_validation_asked_once_or_again(text: str) -> None:
    try:
        expected: str | None = dns_name("dn", text)
    except ValidationError:
        expected = None
    for _ in range(2):  # the second time from the memo, when the name was valid
        if expected is None:
            with pytest.raises(BadRequest):
                base.qname("dn", text)
        else:
            assert base.qname("dn", text) == expected


def test_the_name_memo_keeps_valid_names_only_and_stays_bounded() -> None:
    with pytest.raises(BadRequest):
        base.qname("dn", "bad..name")
    assert "bad..name" not in base._NAMES
    for i in range(base.MAX_NAMES + 100):
        assert base.qname("dn", f"S{i}.Example.ORG.") == f"s{i}.example.org"
    assert len(base._NAMES) <= base.MAX_NAMES
