-- Version 1: the initial schema. Released migrations are never edited, only followed.
CREATE TABLE positions (
    id INTEGER PRIMARY KEY,
    signal_id TEXT NOT NULL,
    wave_id TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    status TEXT NOT NULL,
    quantity REAL NOT NULL,
    entry_client_id TEXT NOT NULL,
    entry_price REAL,
    stop_price REAL,
    stop_client_id TEXT,
    exit_price REAL,
    exit_reason TEXT,
    realized_pnl REAL,
    trailing TEXT NOT NULL,
    opened_at REAL,
    closed_at REAL
);

CREATE INDEX positions_status ON positions (status);

CREATE TABLE orders (
    client_order_id TEXT PRIMARY KEY,
    position_id INTEGER NOT NULL,
    symbol TEXT NOT NULL,
    kind TEXT NOT NULL,
    side TEXT NOT NULL,
    quantity REAL NOT NULL,
    status TEXT NOT NULL,
    stop_price REAL,
    fill_price REAL,
    updated_at REAL NOT NULL
);

CREATE INDEX orders_position ON orders (position_id);

CREATE TABLE trailing (
    position_id INTEGER PRIMARY KEY,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    entry_price REAL NOT NULL,
    activation_price REAL NOT NULL,
    callback_percent REAL NOT NULL,
    state TEXT NOT NULL,
    best_price REAL NOT NULL,
    stop_price REAL NOT NULL,
    stop_client_id TEXT,
    updated_at REAL NOT NULL
);

-- `seq` keeps the order waves were first stored in: engine time (`at`)
-- restarts with every process, so it cannot order waves across runs.
CREATE TABLE waves (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    at REAL NOT NULL,
    started_at REAL NOT NULL,
    duration REAL
);

-- `rank` is in the key: a wave may carry the same signal id twice (the
-- copies are rejected, but each still gets its own outcome).
CREATE TABLE signal_outcomes (
    wave_id TEXT NOT NULL,
    signal_id TEXT NOT NULL,
    rank INTEGER NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT,
    position_id INTEGER,
    trailing TEXT NOT NULL,
    score REAL,
    PRIMARY KEY (wave_id, signal_id, rank)
);

CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    wave_id TEXT,
    signal_id TEXT,
    position_id INTEGER,
    detail TEXT NOT NULL,
    uid TEXT NOT NULL
);

-- A retried batch (after a lost answer) must not log its events twice.
CREATE UNIQUE INDEX events_uid ON events (uid) WHERE uid != '';

CREATE INDEX events_position ON events (position_id);

CREATE INDEX events_signal ON events (signal_id);
