"""The syncopt command: version, models listing, one-line errors with exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import syncopt
from syncopt.models.complexity import count_params


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "syncopt", *args], capture_output=True, text=True, timeout=120)


def test_version():
    res = run_cli("--version")
    assert res.returncode == 0
    assert res.stdout.strip() == f"syncopt {syncopt.__version__}"


@pytest.fixture(scope="module")
def listing() -> list[dict]:
    res = run_cli("models", "--preset", "all", "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_models_json_lists_every_model_with_measured_counts(listing):
    names = {(row["name"], row["preset"]) for row in listing}
    assert {(n, p) for n in ("syncnet_v2", "fcn", "fcn_attn") for p in ("tiny", "full")} <= names
    for row in listing:
        if row["preset"] == "tiny":
            assert row["params"] == count_params(syncopt.create(row["name"], "tiny"))
        assert row["macs"] > 0 and row["frames"] == 25
    by_key = {(r["name"], r["preset"]): r for r in listing}
    assert by_key[("fcn", "full")]["params"] > by_key[("fcn", "tiny")]["params"]
    assert by_key[("syncnet_v2", "full")]["inputs"]["video"] == "Bx3xTx224x224"


def test_models_table(listing):
    res = run_cli("models")
    assert res.returncode == 0
    for name in ("syncnet_v2", "fcn", "fcn_attn"):
        assert name in res.stdout
    full = next(r for r in listing if r["name"] == "syncnet_v2" and r["preset"] == "full")
    assert f"{full['params'] / 1e6:.2f} M" in res.stdout


def test_bad_option_value_is_one_line_with_exit_code():
    res = run_cli("models", "--preset", "huge")
    assert res.returncode == 2
    assert res.stderr.strip() == "error: unknown preset 'huge' (choose tiny, full or all)"
    assert "Traceback" not in res.stderr


def test_debug_shows_traceback():
    res = run_cli("--debug", "models", "--preset", "huge")
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_help_teaches():
    res = run_cli("models", "--help")
    assert res.returncode == 0
    assert "--json" in res.stdout and "Example" in res.stdout


def test_models_listing_is_cached_per_source_tree(tmp_path, monkeypatch):
    from syncopt.models import catalog

    first = catalog.describe_models("tiny", cache_dir=tmp_path)
    [cached] = tmp_path.glob("models_tiny_*.json")
    monkeypatch.setattr(catalog, "_count", lambda preset: pytest.fail("counted again despite the cache"))
    assert catalog.describe_models("tiny", cache_dir=tmp_path) == first
    monkeypatch.setattr(catalog, "_count", lambda preset: first[:1])
    cached.write_text("{damaged")  # a damaged file is counted again and rewritten
    assert catalog.describe_models("tiny", cache_dir=tmp_path) == first[:1]
    monkeypatch.setattr(catalog, "_source_key", lambda: "0" * 64)  # edited source: another key, counted anew
    monkeypatch.setattr(catalog, "_count", lambda preset: [])
    assert catalog.describe_models("tiny", cache_dir=tmp_path) == []
    assert len(list(tmp_path.glob("models_tiny_*.json"))) == 2
