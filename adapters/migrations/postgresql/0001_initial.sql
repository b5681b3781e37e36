-- Version 1: the initial schema, the same logical schema as sqlite/0001_initial.sql.
-- Released migrations are never edited, only followed.
CREATE TABLE positions (
    id BIGINT PRIMARY KEY,
    signal_id TEXT NOT NULL,
    wave_id TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    status TEXT NOT NULL,
    quantity DOUBLE PRECISION NOT NULL,
    entry_client_id TEXT NOT NULL,
    entry_price DOUBLE PRECISION,
    stop_price DOUBLE PRECISION,
    stop_client_id TEXT,
    exit_price DOUBLE PRECISION,
    exit_reason TEXT,
    realized_pnl DOUBLE PRECISION,
    "trailing" TEXT NOT NULL,
    opened_at DOUBLE PRECISION,
    closed_at DOUBLE PRECISION
);

CREATE INDEX positions_status ON positions (status);

-- `seq` orders rows stored in the same instant (SQLite uses its rowid for this).
CREATE TABLE orders (
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    client_order_id TEXT PRIMARY KEY,
    position_id BIGINT NOT NULL,
    symbol TEXT NOT NULL,
    kind TEXT NOT NULL,
    side TEXT NOT NULL,
    quantity DOUBLE PRECISION NOT NULL,
    status TEXT NOT NULL,
    stop_price DOUBLE PRECISION,
    fill_price DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX orders_position ON orders (position_id);

CREATE TABLE "trailing" (
    position_id BIGINT PRIMARY KEY,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    entry_price DOUBLE PRECISION NOT NULL,
    activation_price DOUBLE PRECISION NOT NULL,
    callback_percent DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL,
    best_price DOUBLE PRECISION NOT NULL,
    stop_price DOUBLE PRECISION NOT NULL,
    stop_client_id TEXT,
    updated_at DOUBLE PRECISION NOT NULL
);

-- `seq` keeps the order waves were first stored in: engine time (`at`)
-- restarts with every process, so it cannot order waves across runs.
CREATE TABLE waves (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    duration DOUBLE PRECISION
);

-- `rank` is in the key: a wave may carry the same signal id twice (the
-- copies are rejected, but each still gets its own outcome).
CREATE TABLE signal_outcomes (
    wave_id TEXT NOT NULL,
    signal_id TEXT NOT NULL,
    rank BIGINT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT,
    position_id BIGINT,
    "trailing" TEXT NOT NULL,
    score DOUBLE PRECISION,
    PRIMARY KEY (wave_id, signal_id, rank)
);

CREATE TABLE events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    wave_id TEXT,
    signal_id TEXT,
    position_id BIGINT,
    detail TEXT NOT NULL,
    uid TEXT NOT NULL
);

-- A retried batch (after a lost answer) must not log its events twice.
CREATE UNIQUE INDEX events_uid ON events (uid) WHERE uid != '';

CREATE INDEX events_position ON events (position_id);

CREATE INDEX events_signal ON events (signal_id);
