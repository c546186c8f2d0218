-- Tables without a primary key: one with a unique constraint (and nullable columns in it), one with no
-- constraint and no index at all and duplicate rows, one with only a non-unique index.
CREATE SCHEMA nokey;

CREATE TABLE nokey.log_lines (
    source text NOT NULL,
    line_no integer NOT NULL,
    message text,
    logged_at timestamptz NOT NULL,
    CONSTRAINT log_lines_source_line UNIQUE (source, line_no)
);
INSERT INTO nokey.log_lines (source, line_no, message, logged_at)
SELECT 'host' || (g % 6), g / 6, CASE WHEN g % 11 = 0 THEN NULL ELSE 'message ' || g END,
       timestamptz '2024-02-01 00:00+00' + g * interval '1 minute'
FROM generate_series(0, 599) AS g;

-- no constraint, no index; every row appears twice or three times
CREATE TABLE nokey.raw_events (
    device text,
    reading integer,
    note text
);
INSERT INTO nokey.raw_events (device, reading, note)
SELECT 'device ' || (g % 50), g % 100, CASE WHEN g % 7 = 0 THEN NULL ELSE 'n' || (g % 100) END
FROM generate_series(0, 299) AS g, generate_series(1, 1 + g % 2) AS copies;

CREATE TABLE nokey.samples (
    taken_at timestamp NOT NULL,
    sensor integer NOT NULL,
    value double precision NOT NULL
);
CREATE INDEX samples_sensor_idx ON nokey.samples (sensor, taken_at);
INSERT INTO nokey.samples (taken_at, sensor, value)
SELECT timestamp '2024-01-01' + (g % 97) * interval '1 hour', g % 9, g / 7.0
FROM generate_series(1, 400) AS g;
