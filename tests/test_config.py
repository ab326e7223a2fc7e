"""Configuration: a valid file loads; every invalid entry is reported with its path."""

from __future__ import annotations

import textwrap

import pytest

from gateway.cli import main as gateway_main
from gateway.config import ConfigError, load
from gateway.drivers.base import Driver

VALID = """
[gateway]
timezone = "Europe/Berlin"

[spool]
path = "state/spool.db"
sync = "normal"
journal_interval = 0.5

[uplinks.kardia]
type = "kardia"
base_url = "https://api.kardia.com"
api_key_env = "TEST_KARDIA_KEY"

[[devices]]
name = "kardia-1"
driver = "kardiamobile"
transport = "serial:///dev/ttyACM0?baudrate=57600"
uplinks = ["kardia"]
patient_id = "wNSEDeLOEPQE5rznkJmwbnjpxfdst93i"
recording_seconds = 45
"""


def write(tmp_path, text: str):
    path = tmp_path / "gateway.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_valid_file_loads_with_paths_secrets_and_defaults(tmp_path):
    cfg = load(write(tmp_path, VALID), env={"TEST_KARDIA_KEY": "s3cret"})
    assert cfg.spool.path == (tmp_path / "state" / "spool.db").resolve()
    assert (cfg.spool.sync, cfg.spool.journal_interval) == ("normal", 0.5)
    assert cfg.uplinks["kardia"].credential == "s3cret" and cfg.uplinks["kardia"].secrets() == ["s3cret"]
    assert "s3cret" not in repr(cfg.uplinks["kardia"])
    (dev,) = cfg.devices
    assert (dev.name, dev.transport, dev.recording_seconds, dev.patient_id) == (
        "kardia-1", "serial:///dev/ttyACM0?baudrate=57600", 45.0, "wNSEDeLOEPQE5rznkJmwbnjpxfdst93i")
    assert str(cfg.timezone) == "Europe/Berlin"


def test_every_problem_is_reported_at_once_with_its_path(tmp_path):
    bad = """
    [gateway]
    timezone = "Mars/Olympus"
    colour = "blue"

    [spool]
    path = "spool.db"
    sync = "sometimes"
    journal_interval = 0

    [uplinks.kardia]
    type = "kardia"
    base_url = "ftp://example.com"
    api_key_env = "UNSET_VARIABLE"

    [uplinks.other]
    base_url = "https://x.example"
    api_key = "k"
    api_key_env = "K"

    [[devices]]
    name = "a"
    driver = "nosuchdriver"
    transport = "bluetooth://AA"
    uplinks = ["kardia", "missing"]
    recording_seconds = 0

    [[devices]]
    name = "a"
    driver = "kardiamobile"
    transport = "serial:///dev/ttyUSB0?parity=odd"
    uplinks = []
    """
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, bad), env={})
    errors = "\n".join(err.value.errors)
    for expected in [
        "gateway.timezone: unknown time zone 'Mars/Olympus'",
        "gateway.colour: unknown key",
        "spool.sync: must be one of full, normal, not 'sometimes'",
        "spool.journal_interval: must be between 0.05 and 60",
        "uplinks.kardia.base_url: must be an http:// or https:// URL",
        "uplinks.kardia.api_key_env: environment variable UNSET_VARIABLE is not set",
        "uplinks.other.type: missing",
        "uplinks.other.api_key: give api_key or api_key_env, not both",
        "devices[0].driver: unknown driver 'nosuchdriver' (installed: hexoskin, kardiamobile, upband)",
        "devices[0].transport: unknown transport scheme 'bluetooth'",
        "devices[0].uplinks: no uplink named 'missing'",
        "devices[0].patient_id: required",
        "devices[0].recording_seconds: must be between 1 and 300",
        "devices[1].name: duplicate device name 'a'",
        "devices[1].transport: unknown serial option(s) parity",
        "devices[1].uplinks: must be a non-empty list",
    ]:
        assert expected in errors, f"{expected!r} not reported in:\n{errors}"


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(write(tmp_path, "[spool\npath = 1"))
    with pytest.raises(ConfigError, match="configure at least one"):
        load(write(tmp_path, '[spool]\npath = "s.db"\n[uplinks]\n'))


def test_check_config_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TEST_KARDIA_KEY", "s3cret")
    path = write(tmp_path, VALID)
    assert gateway_main(["check-config", str(path)]) == 0
    assert "valid; 1 device(s): kardia-1 (kardiamobile on serial:///dev/ttyACM0" in capsys.readouterr().out
    monkeypatch.delenv("TEST_KARDIA_KEY")
    assert gateway_main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "uplinks.kardia.api_key_env: environment variable TEST_KARDIA_KEY is not set" in err


def test_the_example_configuration_is_valid():
    from tests.conftest import ROOT

    cfg = load(ROOT / "examples" / "gateway.toml", env={"KARDIA_API_KEY": "k", "HUB_TOKEN": "t",
                                                         "HEXOSKIN_PASSWORD": "p", "HEXOSKIN_API_SECRET": "s",
                                                         "UP_TOKEN": "t"})
    assert [d.driver for d in cfg.devices] == ["kardiamobile", "hexoskin", "upband"] and cfg.spool.sync == "full"
    assert cfg.uplinks["hexoskin"].extra["api_secret"] == "s"
    assert (cfg.uplinks["up"].type, cfg.uplinks["up"].credential) == ("up", "t")


def test_the_example_relay_configuration_is_valid():
    from gateway.config import load_relay
    from tests.conftest import ROOT

    cfg = load_relay(ROOT / "examples" / "relay.toml", env={"KARDIA_API_KEY": "k", "HUB_TOKEN": "t",
                                                              "WG_RELAY_BROKER_PASSWORD": "p"})
    assert (cfg.broker.url, cfg.broker.client_id, cfg.group) == ("mqtts://broker.clinic.example:8883", "relay-1",
                                                                   "relays")
    assert set(cfg.uplinks) == {"kardia", "hub"} and cfg.secrets() == ["k", "t", "p"]


def test_vendor_uplinks_take_only_their_devices_and_a_band_defaults_to_minute_windows(tmp_path):
    band = """
[spool]
path = "spool.db"
[uplinks.up]
type = "up"
base_url = "http://127.0.0.1:8080/up"
token = "tok"
[uplinks.hexoskin]
type = "hexoskin"
base_url = "http://127.0.0.1:8080/hexoskin"
user = "a@b.c"
password = "p"
api_key = "k"
api_secret = "s"
[[devices]]
name = "band"
driver = "upband"
transport = "ble://any?name=UP3-A1B2"
uplinks = ["up"]
"""
    cfg = load(write(tmp_path, band))
    assert cfg.devices[0].recording_seconds == 60.0 and cfg.uplinks["up"].credential == "tok"
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, band.replace('uplinks = ["up"]', 'uplinks = ["up", "hexoskin"]')))
    assert err.value.errors == ["devices[0].uplinks: uplink 'hexoskin' (hexoskin) takes hexoskin devices, not upband"]


def test_each_uplink_type_takes_its_own_credential(tmp_path):
    hub = VALID.replace('uplinks = ["kardia"]', 'uplinks = ["kardia", "hub"]') + """
[uplinks.hub]
type = "humanapi"
base_url = "http://127.0.0.1:8080/humanapi"
token_env = "TEST_HUB_TOKEN"
"""
    cfg = load(write(tmp_path, hub), env={"TEST_KARDIA_KEY": "k", "TEST_HUB_TOKEN": "t0ken"})
    assert cfg.uplinks["hub"].credential == "t0ken" and cfg.devices[0].uplinks == ["kardia", "hub"]
    wrong = hub.replace('token_env = "TEST_HUB_TOKEN"', 'api_key = "k"')
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, wrong), env={"TEST_KARDIA_KEY": "k"})
    assert "uplinks.hub.api_key: unknown key" in str(err.value) and "uplinks.hub.token: missing" in str(err.value)


HEXOSKIN = """
[spool]
path = "spool.db"

[uplinks.hx]
type = "hexoskin"
base_url = "https://api.hexoskin.com"
user = "athlete@example.com"
password_env = "HX_PASSWORD"
api_key = "PUBLIC"
api_secret_env = "HX_SECRET"

[[devices]]
name = "shirt"
driver = "hexoskin"
transport = "serial:///dev/ttyACM1"
uplinks = ["hx"]
"""


def test_a_hexoskin_uplink_takes_basic_credentials_and_an_api_key(tmp_path):
    cfg = load(write(tmp_path, HEXOSKIN), env={"HX_PASSWORD": "pw", "HX_SECRET": "private-half"})
    up = cfg.uplinks["hx"]
    assert (up.type, up.credential, up.extra) == ("hexoskin", "pw", {"user": "athlete@example.com",
                                                                      "api_key": "PUBLIC", "api_secret": "private-half"})
    assert sorted(up.secrets()) == ["private-half", "pw"] and "private-half" not in repr(up)
    broken = HEXOSKIN.replace('user = "athlete@example.com"\n', "").replace('api_secret_env = "HX_SECRET"',
                                                                             'api_secret = "x"\napi_secret_env = "Y"')
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, broken), env={"HX_PASSWORD": "pw"})
    assert "uplinks.hx.user: missing" in err.value.errors
    assert "uplinks.hx.api_secret: give api_secret or api_secret_env, not both" in err.value.errors


def test_ble_transports_need_a_driver_with_a_ble_profile(tmp_path, monkeypatch):
    from gateway import drivers

    shirt = HEXOSKIN.replace('transport = "serial:///dev/ttyACM1"', 'transport = "ble://00:11:22:33:44:55?adapter=hci0"')
    cfg = load(write(tmp_path, shirt), env={"HX_PASSWORD": "pw", "HX_SECRET": "s"})
    assert cfg.devices[0].transport.startswith("ble://")
    monkeypatch.setitem(drivers.BUILTIN, "serialonly", "tests.test_config:SerialOnlyDriver")
    other = VALID.replace('driver = "kardiamobile"', 'driver = "serialonly"').replace(
        'transport = "serial:///dev/ttyACM0?baudrate=57600"', 'transport = "ble://any?name=Thing"')
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, other), env={"TEST_KARDIA_KEY": "k"})
    assert "devices[0].transport: the serialonly driver has no BLE profile yet; use serial://" in err.value.errors


class SerialOnlyDriver(Driver):
    """A plug-in driver that names no BLE characteristics."""

    name = "serialonly"

    def feed(self, data, arrival):
        return []

    def link_lost(self):
        return []


def test_every_configuration_key_is_described_in_the_reference():
    """docs/configuration.md has a row for every key each table takes, in that table's section."""
    import re
    from pathlib import Path

    from gateway import config

    doc = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    sections = dict(re.findall(r"^#{2,3} (.+?)\n(.*?)(?=^#{2,3} |\Z)", doc, flags=re.S | re.M))

    def keys_in(title: str) -> set[str]:
        return set(re.findall(r"^\| `([a-z_]+)` \|", sections[title], flags=re.M))

    assert set(config.GATEWAY_KEYS) <= keys_in("[gateway]")
    assert set(config.SPOOL_KEYS) <= keys_in("[spool]")
    assert set(config.STATUS_KEYS) <= keys_in("[status]")
    assert set(config.DEVICE_KEYS) <= keys_in("[[devices]]")
    for utype in config.UPLINK_TYPES:
        described = keys_in("[uplinks.NAME]") | keys_in(f'type = "{utype}"')
        missing = set(config.uplink_keys(utype)) - described
        assert not missing, f"uplink type {utype}: {sorted(missing)} not in docs/configuration.md"
    for table in config.TOP_KEYS:
        assert any(table in title for title in sections), table
    assert set(config.RELAY_KEYS) <= keys_in("[relay]")
