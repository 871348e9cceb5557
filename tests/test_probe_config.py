"""The volunteer's probe.toml: defaults declared once, every invalid form refused with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.config import CONFIG_FILE_NAME, SETTINGS, ConfigError, ProbeConfig, load_config, load_state_config

# name -> (probe.toml text, part of the expected message)
INVALID = {
    "unknown-key": ("max_ppss = 10\n", "unknown setting(s) max_ppss"),
    "pps-string": ('max_pps = "200"\n', "max_pps must be an integer, not str"),
    "pps-bool": ("max_pps = true\n", "max_pps must be an integer, not bool"),
    "pps-float": ("max_pps = 2.5\n", "max_pps must be an integer, not float"),
    "pps-zero": ("max_pps = 0\n", "max_pps must be between 1 and 100000, not 0"),
    "concurrency-negative": ("max_concurrent_tests = -1\n", "max_concurrent_tests must be between 1"),
    "bytes-negative": ("max_throughput_bytes_per_hour = -5\n", "max_throughput_bytes_per_hour must be between 0"),
    "ranges-not-list": ('allow_ranges = "10.0.0.0/8"\n', "allow_ranges must be a list of CIDR strings"),
    "ranges-not-cidr": ('allow_ranges = ["10.0.0.0/33"]\n', "allow_ranges entry '10.0.0.0/33' is not a CIDR range"),
    "ranges-host-bits": ('allow_ranges = ["10.0.0.1/8"]\n', "has host bits set"),
    "ranges-number": ("allow_ranges = [10]\n", "allow_ranges entries must be strings, not int"),
    "not-toml": ("max_pps = \n", "not valid TOML"),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_configs_fail_with_the_right_message(name: str, tmp_path: Path) -> None:
    text, message = INVALID[name]
    path = tmp_path / f"invalid-{name}.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_defaults_declared_once() -> None:
    config = load_config(None)
    assert config == ProbeConfig()
    assert config.max_pps == 200 and config.max_concurrent_tests == 4
    assert config.max_throughput_bytes_per_hour == 200_000_000 and config.allow_ranges == ()
    assert SETTINGS == ("allow_ranges", "max_pps", "max_concurrent_tests", "max_throughput_bytes_per_hour")


def test_valid_config(tmp_path: Path) -> None:
    path = tmp_path / CONFIG_FILE_NAME
    path.write_text('allow_ranges = ["198.18.0.0/15", "fd00::/8"]\nmax_pps = 1000\n'
                    "max_concurrent_tests = 8\nmax_throughput_bytes_per_hour = 0\n")
    config = load_state_config(tmp_path)
    assert config.allow_ranges == ("198.18.0.0/15", "fd00::/8")
    assert (config.max_pps, config.max_concurrent_tests, config.max_throughput_bytes_per_hour) == (1000, 8, 0)
    assert [str(n) for n in config.networks()] == ["198.18.0.0/15", "fd00::/8"]


def test_state_dir_without_config_uses_defaults(tmp_path: Path) -> None:
    assert load_state_config(tmp_path) == ProbeConfig()


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")
