-- Version 2: the memory of handled signal ids, so a re-sent id never trades twice.
-- `rank` names the copy that was handled (a wave may carry an id twice; only the
-- first copy is attempted), so its outcome can be written back onto the claim.
CREATE TABLE handled_signals (
    signal_id TEXT PRIMARY KEY,
    wave_id TEXT NOT NULL,
    rank INTEGER NOT NULL,
    handled_at REAL NOT NULL,
    outcome TEXT
);

-- Retention prunes by age.
CREATE INDEX handled_signals_at ON handled_signals (handled_at);
