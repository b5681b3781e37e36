"""One parser for `--db`, and no secret of a URL in any message."""

from __future__ import annotations

import logging

import pytest

from adapters.db_url import parse_db_url, redact, scrub
from engine.errors import ConfigError

SECRETS = ("hunter2", "s3cr3t")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://trader:hunter2@db:5432/bot", "postgresql://***@db:5432/bot"),
        ("postgres://trader@db/bot", "postgres://***@db/bot"),
        ("postgresql://:hunter2@db/bot", "postgresql://***@db/bot"),
        ("postgresql://tra%40der:hun%3Ater2@db/bot", "postgresql://***@db/bot"),
        ("postgresql://trader:p@ss@hunter2@db/bot", "postgresql://***@db/bot"),  # unescaped @ in the password
        ("postgresql://db/bot?password=hunter2&sslmode=require", "postgresql://db/bot?password=***&sslmode=require"),
        ("postgresql://db/bot?sslpassword=hunter2", "postgresql://db/bot?sslpassword=***"),
        ("postgresql://db/bot?PASSWORD=hunter2#x", "postgresql://db/bot?PASSWORD=***#x"),
        ("host=db user=trader password='hunter2 s3cr3t' dbname=bot", "host=db user=trader password=*** dbname=bot"),
        ("mysql://root:hunter2@db/bot", "mysql://***@db/bot"),
        ("postgresql://trader:hunter2@db:abc/bot", "postgresql://***@db:abc/bot"),
        ("postgresql://trader:hunter2@[::1/bot", "postgresql://***@[::1/bot"),  # unparseable
        ("no url here: password = hunter2", "no url here: password = ***"),
        ("sqlite:///trio-bot.db", "sqlite:///trio-bot.db"),
    ],
)
def test_redact_hides_user_password_and_password_parameters(url, shown):
    assert redact(url) == shown
    assert not any(secret in redact(url) for secret in SECRETS)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("", "empty"),
        ("trio-bot.db", ""),
        ("sqlite:///", "no file path"),
        ("mysql://root:hunter2@db/bot", "unknown scheme 'mysql'"),
        ("postgresql://trader:hunter2@db:abc/bot", "Port could not be cast"),
        ("postgresql://trader:hunter2@db:99999/bot", "out of range"),
        ("postgresql://trader:hunter2@db:0/bot", "port 0"),
        ("postgresql://trader:hunter2@[::1/bot", "Invalid IPv6 URL"),
        ("postgresql://trader:hunter2@db/bot\x00", "NUL"),
        ("postgresql://db/" + "x" * 5000, "too long"),
    ],
)
def test_unusable_urls_are_config_errors_without_secrets(url, why):
    with pytest.raises(ConfigError) as info:
        parse_db_url(url)
    message = str(info.value)
    assert message.startswith("config: --db = ") and why in message
    assert not any(secret in message for secret in SECRETS)


def test_parsed_urls_know_their_kind_and_carry_a_safe_form():
    sqlite = parse_db_url("sqlite:////var/lib/bot.db")
    assert (sqlite.kind, sqlite.path) == ("sqlite", "/var/lib/bot.db")
    pg = parse_db_url("postgresql://trader:hunter2@db:5432/bot?sslpassword=s3cr3t")
    assert pg.kind == "postgresql" and pg.path is None
    assert pg.safe == "postgresql://***@db:5432/bot?sslpassword=***"
    assert "hunter2" not in repr(pg) and "s3cr3t" not in repr(pg)


def test_scrub_removes_a_urls_secrets_from_a_drivers_message():
    url = "postgresql://trader:hun%40ter2@db/bot?password=s3cr3t"
    message = "could not connect as trader with hun@ter2 (dsn postgresql://trader:hun%40ter2@db/bot), s3cr3t"
    cleaned = scrub(message, url)
    assert "hun@ter2" not in cleaned and "hun%40ter2" not in cleaned and "s3cr3t" not in cleaned
    assert "trader" not in cleaned


def test_log_lines_never_carry_the_password(tmp_path, caplog, capsys):
    from trio_bot.cli import main

    caplog.set_level(logging.INFO)
    assert main(["-v", "waves", "--db", "postgresql://trader:hunter2@127.0.0.1:1/bot?sslpassword=s3cr3t"]) == 1
    everything = caplog.text + "".join(capsys.readouterr())
    assert "127.0.0.1:1" in everything
    assert not any(secret in everything for secret in SECRETS)
