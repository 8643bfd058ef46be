"""Argv templates and digests: the contract the server and the agent share."""

import hashlib
import ipaddress
import json
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warden_agent.argv import (
    TYPES,
    ArgvError,
    allowlist_digest,
    argv_digest,
    fill,
    mismatch,
    placeholders,
)

BLOCK = ["warden-runbook", "nft-block", "--address", "{address:ip}", "--timeout", "1h"]


# --- digests ---------------------------------------------------------------------------


def test_argv_digest_is_the_sha256_of_compact_utf8_json():
    assert argv_digest(["ls", "-l"]) == hashlib.sha256(b'["ls","-l"]').hexdigest()
    # ensure_ascii=False: non-ASCII as UTF-8 bytes, not \u escapes
    assert argv_digest(["echo", "é"]) == hashlib.sha256('["echo","é"]'.encode()).hexdigest()


def test_allowlist_digest_sorts_actions_and_ignores_how_the_lists_are_held():
    one = {"b": ["y"], "a": ("x", "{p:port}")}
    two = {"a": ["x", "{p:port}"], "b": ["y"]}
    expected = hashlib.sha256(b'{"a":["x","{p:port}"],"b":["y"]}').hexdigest()
    assert allowlist_digest(one) == allowlist_digest(two) == expected
    assert allowlist_digest({}) == hashlib.sha256(b"{}").hexdigest()


def test_digests_tell_different_argvs_apart():
    assert argv_digest(["a b"]) != argv_digest(["a", "b"])
    assert argv_digest(["rm", "-r", "/tmp/x"]) != argv_digest(["rm", "-r", "/tmp/y"])


# --- placeholders ----------------------------------------------------------------------


def test_placeholders_are_named_and_typed_in_order():
    template = ["fw", "{address:ip}", "--port", "{port:port}", "{}", "literal"]
    assert placeholders(template) == [("address", "ip"), ("port", "port")]
    assert placeholders(["ls", "-l"]) == []


@pytest.mark.parametrize(
    ("element", "says"),
    [
        ("{address:ipv4}", "unknown type 'ipv4'"),
        ("{address}", "has no type"),
        ("{port:}", "unknown type ''"),
    ],
)
def test_a_malformed_placeholder_is_an_error_not_a_literal(element, says):
    with pytest.raises(ArgvError, match=says):
        placeholders(["fw", element])


def test_a_placeholder_name_used_twice_is_an_error():
    with pytest.raises(ArgvError, match="appears twice"):
        placeholders(["fw", "{a:ip}", "{a:ip}"])


# --- types -----------------------------------------------------------------------------

VALID = {
    "ip": ["10.0.0.1", "2001:db8::1", "10.0.0.0/8", "2001:db8::/32", "::ffff:1.2.3.4"],
    "port": ["1", "22", "65535"],
    "unit": ["app.service", "getty@tty1.service", "backup.timer", "dev-sda1.mount", "a.slice"],
    "word": ["eth0", "a", "web-01.example_com", "x" * 128],
}
INVALID = {
    "ip": ["10.0.0.1/8", "fe80::1%eth0", "999.1.1.1", "", " 10.0.0.1", "10.0.0.1\n", "host"],
    "port": ["0", "65536", "022", "+1", "1.0", "٣", "1\n", ""],
    "unit": ["app", ".service", "-x.service", "app.service\n", "app.servicex", "a b.service"],
    "word": ["", "-rf", ".hidden", "a/b", "a b", "x" * 129, "é", "a\n"],
}


@pytest.mark.parametrize(("kind", "value"), [(k, v) for k, vs in VALID.items() for v in vs])
def test_valid_values_fill_their_type(kind, value):
    assert fill(["cmd", f"{{v:{kind}}}"], {"v": value}) == ["cmd", value]


@pytest.mark.parametrize(("kind", "value"), [(k, v) for k, vs in INVALID.items() for v in vs])
def test_invalid_values_are_refused_naming_the_parameter(kind, value):
    with pytest.raises(ArgvError, match=f"parameter v is not a valid {kind}|must not start"):
        fill(["cmd", f"{{v:{kind}}}"], {"v": value})


def test_the_types_are_exactly_the_four_of_the_protocol():
    assert set(TYPES) == {"ip", "port", "unit", "word"}


# --- fill ------------------------------------------------------------------------------


def test_fill_puts_each_value_in_its_place_and_ignores_unused_parameters():
    params = {"address": "192.0.2.7", "reason": "unused"}
    assert fill(BLOCK, params) == [
        "warden-runbook",
        "nft-block",
        "--address",
        "192.0.2.7",
        "--timeout",
        "1h",
    ]


def test_fill_names_a_missing_parameter():
    with pytest.raises(ArgvError, match=r"parameter address \(ip\) is missing"):
        fill(BLOCK, {})


def test_fill_refuses_a_value_that_would_read_as_an_option():
    with pytest.raises(ArgvError, match="address must not start with '-'"):
        fill(BLOCK, {"address": "-6"})


def test_fill_refuses_a_value_that_is_not_a_string():
    with pytest.raises(ArgvError, match="port must be a string, got int"):
        fill(["fw", "{port:port}"], {"port": 22})  # type: ignore[dict-item]


def test_fill_refuses_an_invalid_template_whatever_the_parameters():
    with pytest.raises(ArgvError, match="unknown type"):
        fill(["fw", "{address:host}"], {"address": "10.0.0.1"})


# --- mismatch --------------------------------------------------------------------------


def test_mismatch_is_none_for_the_argv_the_template_makes():
    assert mismatch(BLOCK, fill(BLOCK, {"address": "192.0.2.7"})) is None
    assert mismatch(["ls", "-l"], ["ls", "-l"]) is None


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (BLOCK[:-1], "argv has 5 elements, the template 6"),
        ([*BLOCK[:3], "192.0.2.7", "--timeout", "9h"], "argv[5] is '9h', the template has '1h'"),
        ([*BLOCK[:3], "0.0.0.0/0 accept", "--timeout", "1h"], "argv[3] does not fill"),
        ([*BLOCK[:3], "-f", "--timeout", "1h"], "must not start with '-'"),
        ("warden-runbook nft-block", "argv must be a list of strings"),
        ([*BLOCK[:3], 7, "--timeout", "1h"], "argv must be a list of strings"),
    ],
)
def test_mismatch_says_why_in_one_line(argv, says):
    reason = mismatch(BLOCK, argv)
    assert reason is not None and says in reason
    assert "\n" not in reason


def test_mismatch_keeps_a_hostile_value_on_one_short_line():
    reason = mismatch(["echo", "hi"], ["echo", "hi\n" * 500])
    assert reason is not None and "\n" not in reason and len(reason) < 200


def test_mismatch_of_an_invalid_template_is_a_reason_not_an_exception():
    assert "the template is invalid" in mismatch(["fw", "{a:nope}"], ["fw", "x"])


def test_the_argv_module_needs_nothing_beyond_the_standard_library():
    code = "import sys, warden_agent.argv; print('psutil' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# --- properties ------------------------------------------------------------------------

VALUES = {
    "ip": st.one_of(
        st.ip_addresses().map(str),
        st.tuples(st.ip_addresses(v=4), st.integers(0, 32)).map(
            lambda t: str(ipaddress.ip_network(f"{t[0]}/{t[1]}", strict=False))
        ),
        st.tuples(st.ip_addresses(v=6), st.integers(0, 128)).map(
            lambda t: str(ipaddress.ip_network(f"{t[0]}/{t[1]}", strict=False))
        ),
    ),
    "port": st.integers(1, 65535).map(str),
    "unit": st.from_regex(
        r"[A-Za-z0-9][A-Za-z0-9@._:-]{0,20}\.(service|socket|timer|target|mount|slice)",
        fullmatch=True,
    ),
    "word": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}", fullmatch=True),
}
LITERALS = st.text(max_size=20).filter(lambda s: not (s.startswith("{") and s.endswith("}")))


@st.composite
def templates_and_params(draw):
    """A template of literals and uniquely named placeholders, and valid values for them."""
    template, params = [draw(LITERALS)], {}
    for index in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            kind = draw(st.sampled_from(sorted(TYPES)))
            template.append(f"{{p{index}:{kind}}}")
            params[f"p{index}"] = draw(VALUES[kind])
        else:
            template.append(draw(LITERALS))
    return template, params


@given(templates_and_params())
def test_fill_always_makes_an_argv_its_template_matches(case):
    template, params = case
    argv = fill(template, params)
    assert mismatch(template, argv) is None
    assert len(argv) == len(template)
    for element, value in zip(template, argv, strict=True):
        assert value == (params[element[1:].split(":")[0]] if placeholders([element]) else element)


@given(st.sampled_from(sorted(TYPES)), st.text(max_size=60))
def test_fill_and_mismatch_agree_on_every_value(kind, value):
    template = ["cmd", f"{{v:{kind}}}"]
    try:
        argv = fill(template, {"v": value})
    except ArgvError:
        assert mismatch(template, ["cmd", value]) is not None
    else:
        assert argv == ["cmd", value]
        assert mismatch(template, argv) is None
        assert not value.startswith("-")


@given(st.lists(st.text(max_size=30), max_size=8))
def test_argv_digest_is_stable(argv):
    digest = argv_digest(argv)
    assert digest == argv_digest(tuple(argv)) == argv_digest(list(argv))
    assert len(digest) == 64 and int(digest, 16) >= 0
    encoded = json.dumps(argv, ensure_ascii=False, separators=(",", ":")).encode()
    assert digest == hashlib.sha256(encoded).hexdigest()


@given(st.dictionaries(st.text(max_size=10), st.lists(st.text(max_size=10), max_size=4)))
def test_allowlist_digest_is_stable_whatever_the_order_of_actions(entries):
    reordered = dict(reversed(list(entries.items())))
    assert allowlist_digest(entries) == allowlist_digest(reordered)
    assert allowlist_digest(entries) == allowlist_digest(
        {action: tuple(template) for action, template in entries.items()}
    )
