"""Configuration: defaults once, file + environment, unknown keys refused, feature sections."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from coordinator import config as cfgmod
from coordinator.config import ConfigError, CoreSettings, load_config


def test_defaults_file_and_environment(tmp_path: Path) -> None:
    assert load_config(None, environ={}).core == CoreSettings()
    f = tmp_path / "c.toml"
    f.write_text('[coordinator]\nlisten = "127.0.0.1:9000"\nrate_records_per_s = 10\n')
    c = load_config(f, environ={"TOCSIN_LISTEN": "127.0.0.1:9001", "TOCSIN_SILENT_AFTER_S": "30",
                                "TOCSIN_DATA_SOMETHING_ELSE": "ignored"})
    assert c.listen == "127.0.0.1:9001" and c.rate_records_per_s == 10.0 and c.silent_after_s == 30.0
    assert c.source == str(f)
    (tmp_path / "coordinator.toml").write_text('[coordinator]\npoll_interval_s = 5\n')
    assert load_config(None, data_dir=tmp_path, environ={}).poll_interval_s == 5.0


@pytest.mark.parametrize("text,needle", [
    ('[coordinator]\nlistn = "x"\n', "unknown key(s) listn in [coordinator]"),
    ('[coordinatr]\n', "unknown section [coordinatr]"),
    ('[coordinator]\ningest_max_bytes = "big"\n', "[coordinator] ingest_max_bytes must be int"),
    ('[coordinator]\ningest_max_bytes = 1.5\n', "must be int"),
    ("[coordinator\n", "cannot read config"),
])
def test_invalid_files_say_what_is_wrong(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(f, environ={})
    assert needle in str(info.value)


def test_feature_sections_are_declared_by_their_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "tcfeature"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "settings.py").write_text(
        "from dataclasses import dataclass\n@dataclass\nclass Settings:\n    window_s: float = 600.0\n    name: str = 'x'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cfgmod, "SECTION_MODULES", (("tcfeature", "tcfeature.settings"), ("gone", "tc_not_installed.settings")))
    f = tmp_path / "c.toml"
    f.write_text('[tcfeature]\nwindow_s = 60\n')
    c = load_config(f, environ={"TOCSIN_TCFEATURE__NAME": "y"})
    assert c.section("tcfeature").window_s == 60.0 and c.section("tcfeature").name == "y"
    assert "gone" not in c.sections
    with pytest.raises(ConfigError, match="unknown setting in environment TOCSIN_TCFEATURE__COLOUR"):
        load_config(None, environ={"TOCSIN_TCFEATURE__COLOUR": "red"})
    f.write_text('[tcfeature]\ncolour = 1\n')
    with pytest.raises(ConfigError, match=r"unknown key\(s\) colour in \[tcfeature\]"):
        load_config(f, environ={})
    sys.modules.pop("tcfeature.settings", None)
    sys.modules.pop("tcfeature", None)
