-- Version 4: a wave the engine stopped before it could finish is marked, and completed
-- (one outcome per signal) at the next start-up.
ALTER TABLE waves ADD COLUMN interrupted INTEGER NOT NULL DEFAULT 0;

-- Start-up finds the ids an unfinished wave claimed.
CREATE INDEX handled_signals_wave ON handled_signals (wave_id);
