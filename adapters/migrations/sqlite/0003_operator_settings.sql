-- Version 3: operator settings that must survive a restart (the pause of new entries).
CREATE TABLE operator_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL
);

CREATE INDEX events_wave ON events (wave_id);

CREATE INDEX events_at ON events (at);
