"""Fault injection fires once per trial at the named epoch, and a mistyped mode is an error, not a no-op."""
from __future__ import annotations

import pytest

from mfer_platform.sweep.faults import InjectedFault, maybe_fail


def test_raise_fires_once_at_its_epoch(tmp_path, monkeypatch):
    monkeypatch.setenv("MFER_FAULTS", "raise@2")
    monkeypatch.setenv("MFER_FAULTS_DIR", str(tmp_path))
    maybe_fail("t0", 1)  # not yet
    with pytest.raises(InjectedFault, match="t0 after epoch 2"):
        maybe_fail("t0", 2)
    maybe_fail("t0", 2)  # the retry runs clean
    with pytest.raises(InjectedFault):
        maybe_fail("t1", 2)  # ...and every trial gets its own


def test_unknown_mode_is_an_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv("MFER_FAULTS", "crash@2")
    with pytest.raises(ValueError, match="MFER_FAULTS='crash@2'.*raise, kill, hang"):
        maybe_fail("t0", 2)


def test_inert_without_the_variable(monkeypatch):
    monkeypatch.delenv("MFER_FAULTS", raising=False)
    maybe_fail("t0", 2)
