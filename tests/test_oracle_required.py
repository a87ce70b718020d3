"""The oracles (torchvision, timm) fail the suite instead of skipping it where they are required
(CONVNET_REQUIRE_ORACLES=1, set by `make test`), and every test runs under a timeout."""
from __future__ import annotations

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from pathlib import Path

import pytest

import oracle

ROOT = Path(__file__).resolve().parents[1]


def test_a_missing_oracle_skips_by_default(monkeypatch):
    monkeypatch.delenv("CONVNET_REQUIRE_ORACLES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="convnet_no_such_oracle cannot be imported here"):
        oracle._import("convnet_no_such_oracle")


def test_a_missing_oracle_fails_where_required(monkeypatch):
    monkeypatch.setenv("CONVNET_REQUIRE_ORACLES", "1")
    with pytest.raises(pytest.fail.Exception, match="convnet_no_such_oracle cannot be imported here.*"
                                                    "CONVNET_REQUIRE_ORACLES=1"):
        oracle._import("convnet_no_such_oracle")
    monkeypatch.setenv("CONVNET_REQUIRE_ORACLES", "0")
    with pytest.raises(pytest.skip.Exception):
        oracle._import("convnet_no_such_oracle")


def test_make_test_requires_the_oracles_and_tests_have_a_timeout():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "CONVNET_REQUIRE_ORACLES=1" in recipe and "pytest" in recipe
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert 60 < int(options["timeout"]) <= 1800
    assert "hypothesis" in " ".join(tomllib.loads((ROOT / "pyproject.toml").read_text())
                                    ["project"]["optional-dependencies"]["test"])
