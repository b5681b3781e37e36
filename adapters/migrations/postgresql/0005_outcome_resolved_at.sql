-- Version 5: when an outcome reported provisionally (an entry whose answer was lost,
-- "being resolved") was decided by the unknown-outcome resolver; NULL for the others.
ALTER TABLE signal_outcomes ADD COLUMN resolved_at DOUBLE PRECISION;
