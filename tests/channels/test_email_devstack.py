"""`make test` makes Dovecot available for the IMAP tests, or says why it cannot."""

from __future__ import annotations

from supportbot.devstack.dovecot import DEFAULT_PATH, dovecot_path, ensure_dovecot


def test_an_existing_dovecot_is_used_as_is(monkeypatch):
    monkeypatch.setenv("DOVECOT_PATH", str(dovecot_path()))

    assert ensure_dovecot() is None


def test_a_dovecot_path_that_does_not_exist_is_reported_not_installed(monkeypatch, tmp_path):
    missing = tmp_path / "no-dovecot"
    monkeypatch.setenv("DOVECOT_PATH", str(missing))

    problem = ensure_dovecot()

    assert problem is not None
    assert str(missing) in problem
    assert "apt-get install dovecot-imapd" in problem
    assert not missing.exists()


def test_the_default_is_debians_path(monkeypatch):
    monkeypatch.delenv("DOVECOT_PATH", raising=False)

    assert str(dovecot_path()) == DEFAULT_PATH
