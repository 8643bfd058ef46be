"""The config file and the key: every fault is one line naming the key or file."""

import dataclasses
from pathlib import Path

import pytest

from warden_agent import config
from warden_agent.config import KEYS, ConfigError, Settings, load_settings, read_key

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "agent" / "examples" / "agent.toml"


@pytest.fixture(autouse=True)
def no_default_config(tmp_path, monkeypatch):
    """This machine's /etc/warden-agent/agent.toml, if any, never enters a test."""
    monkeypatch.setattr(config, "DEFAULT_CONFIG", str(tmp_path / "absent" / "agent.toml"))


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return str(path)


def test_the_example_config_is_valid_and_says_what_the_readme_says():
    settings = load_settings(str(EXAMPLE), {})
    assert settings.url == "https://warden.example.com"
    assert settings.host == "web-01"
    assert settings.key_file == "/etc/warden-agent/key"
    assert settings.allowlist == "/etc/warden-agent/allowlist.json"
    assert settings.spool_dir == "/var/lib/warden-agent/spool"
    assert settings.interval == 5.0 and settings.spool_limit == 20_000


def test_every_setting_is_a_config_key():
    assert set(KEYS) == {field.name for field in dataclasses.fields(Settings)}


def test_flags_override_the_file(tmp_path):
    path = write(tmp_path, 'url = "http://a:8000"\nhost = "web-01"\ninterval = 10\n')

    settings = load_settings(path, {"interval": 2.0, "host": None})

    assert settings.interval == 2.0  # the flag
    assert settings.host == "web-01"  # a flag not given leaves the file's value
    assert settings.url == "http://a:8000"


def test_without_a_config_file_the_flags_are_enough():
    settings = load_settings(None, {"url": "https://w.example.com/", "host": "h"})
    assert settings.url == "https://w.example.com"  # no trailing slash
    assert settings.poll_wait == 50.0 and settings.action_timeout == 60.0
    assert settings.request_timeout == 10.0


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("intervall = 5", "unknown key 'intervall'"),
        ("[agent]\nurl = 'x'", "unknown key 'agent'"),
        ('interval = "5"', "interval must be a positive number of seconds, got '5'"),
        ("interval = 0", "interval must be a positive number of seconds, got 0"),
        ("poll_wait = -1", "poll_wait must be a positive number of seconds"),
        ("post_every = true", "post_every must be a positive number of seconds, got True"),
        ("spool_limit = 1.5", "spool_limit must be a positive whole number, got 1.5"),
        ("url = 8000", "url must be a non-empty string, got 8000"),
        ('host = ""', "host must be a non-empty string"),
        ("url = ", "is not valid TOML"),
    ],
)
def test_a_bad_config_is_one_line_naming_the_key(tmp_path, text, says):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_settings(path, {})
    assert says in str(error.value) and "\n" not in str(error.value)
    assert path in str(error.value)


def test_a_missing_config_named_on_the_command_line_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot read config .*No such file"):
        load_settings(str(tmp_path / "nope.toml"), {})


@pytest.mark.parametrize("missing", ["url", "host"])
def test_run_needs_a_url_and_a_host(tmp_path, missing):
    given = {"url": "http://a", "host": "h"}
    del given[missing]
    with pytest.raises(ConfigError, match=f"no {missing}: set {missing} in .* or pass --{missing}"):
        load_settings(None, given)


def test_a_url_that_is_not_http_is_refused():
    with pytest.raises(ConfigError, match="must be http"):
        load_settings(None, {"url": "warden.example.com", "host": "h"})


# --- the key ---------------------------------------------------------------------------


def key_file(tmp_path: Path, mode: int, text: str = "s3cret-key\n") -> Settings:
    path = tmp_path / "key"
    path.write_text(text)
    path.chmod(mode)
    return Settings(key_file=str(path))


def test_reads_the_key_from_a_file_only_its_owner_can_read(tmp_path):
    assert read_key(key_file(tmp_path, 0o600), environ={}) == "s3cret-key"
    assert read_key(key_file(tmp_path, 0o400), environ={}) == "s3cret-key"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_refuses_a_key_file_others_can_read(tmp_path, mode):
    settings = key_file(tmp_path, mode)
    with pytest.raises(ConfigError) as error:
        read_key(settings, environ={})
    message = str(error.value)
    assert f"key file {settings.key_file} is readable by group or others" in message
    assert f"(mode {mode:04o}); run: chmod 600" in message


@pytest.mark.parametrize("text", ["", "\n", "two words\n"])
def test_a_key_file_must_hold_just_the_key(tmp_path, text):
    with pytest.raises(ConfigError, match="must hold the key alone"):
        read_key(key_file(tmp_path, 0o600, text), environ={})


def test_a_missing_key_file_says_so(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot read key file .*No such file"):
        read_key(Settings(key_file=str(tmp_path / "key")), environ={})


def test_without_a_key_file_the_key_comes_from_the_environment():
    assert read_key(Settings(), environ={"WARDEN_AGENT_KEY": " k-1 "}) == "k-1"
    with pytest.raises(ConfigError, match="no API key: set key_file in the config or WARDEN"):
        read_key(Settings(), environ={})


def test_a_key_file_wins_over_the_environment(tmp_path):
    assert read_key(key_file(tmp_path, 0o600), environ={"WARDEN_AGENT_KEY": "other"}) == (
        "s3cret-key"
    )
