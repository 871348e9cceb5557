"""Every shipped target list parses, names only tests that exist, and is documented."""

from __future__ import annotations

from pathlib import Path

import pytest

import targets
from probe.probers import REGISTRY

DOC = Path(__file__).resolve().parents[1] / "docs" / "targets.md"


@pytest.mark.parametrize("name", targets.list_names())
def test_list_parses_and_names_existing_tests(name: str) -> None:
    entries = targets.load_list(name)
    assert entries, f"{name} is empty"
    names = [t.name for t in entries]
    assert len(names) == len(set(names)), f"duplicate targets in {name}"
    for t in entries:
        assert set(t.tests) <= set(REGISTRY)
        assert any(t.target_for(test) for test in t.tests), t


def test_kazakhstan_list_covers_what_a_shutdown_touches() -> None:
    kz = targets.load_list("kz")
    groups = {t.group for t in kz}
    assert {"egov", "gov", "halykbank", "kaspi", "kazakhtelecom", "beeline", "kcell", "tele2",
            "tengrinews", "resolver-kazakhtelecom"} <= groups
    assert {t.cc for t in kz} == {"KZ"} and {t.category for t in kz} == {"domestic"}
    assert {t.category for t in targets.load_list("international")} == {"international"}
    assert {t.category for t in targets.load_list("controls")} == {"control"}


def test_bad_lists_are_refused_with_the_reason(tmp_path: Path) -> None:
    cases = {
        'country = "KZ"\n[[target]]\nname = "a.kz"\ncategory = "domestic"\ntests = ["smoke"]\n': "unknown test 'smoke'",
        'country = "KZ"\n[[target]]\nname = "a.kz"\ncategory = "local"\n': "category must be one of",
        'country = "KZ"\n[[target]]\nname = "a.kz"\ncategory = "domestic"\ncolour = 1\n': "unknown key(s) colour",
        'country = "kz"\n': "country must be two upper-case letters",
        'country = "KZ"\n[[target]]\nname = "a.kz"\ncategory = "domestic"\nport = 70000\n': "port must be",
    }
    for i, (text, needle) in enumerate(cases.items()):
        path = tmp_path / f"bad{i}.toml"
        path.write_text(text)
        with pytest.raises(targets.TargetListError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            targets.load_list(path)


def test_target_for_each_test() -> None:
    t = targets.Target(name="egov.kz", category="domestic", group="egov", cc="KZ", tests=tuple(REGISTRY))
    assert t.target_for("http") == "https://egov.kz/" and t.target_for("tcp") == "egov.kz:443"
    assert t.target_for("dns") == "egov.kz" and t.target_for("ping") == "egov.kz"
    r = targets.Target(name="resolver-x", category="domestic", group="r", cc="KZ", tests=("ping",), address="192.0.2.1", port=53)
    assert r.target_for("tcp") == "192.0.2.1:53" and r.target_for("dns") is None and r.target_for("http") is None


def test_docs_describe_every_key_and_list() -> None:
    text = DOC.read_text()
    for key in (*targets.TARGET_KEYS, *targets.LIST_KEYS, *targets.CATEGORIES):
        assert f"`{key}`" in text, f"docs/targets.md does not describe {key}"
    for name in targets.list_names():
        assert f"targets/{name}.toml" in text
