-- Partitioned and sub-partitioned tables: range, list and hash; default partitions; an index on a parent;
-- primary keys that include the partition key; a table with a foreign key to a partitioned table.
CREATE SCHEMA parts;

-- range by day, one range sub-partitioned by list, a default partition
CREATE TABLE parts.measurements (
    id integer NOT NULL,
    taken_on date NOT NULL,
    region text NOT NULL,
    sensor integer NOT NULL,
    value numeric(10, 2) NOT NULL,
    PRIMARY KEY (id, taken_on, region)
) PARTITION BY RANGE (taken_on);
CREATE TABLE parts.measurements_2024_h1 PARTITION OF parts.measurements
    FOR VALUES FROM ('2024-01-01') TO ('2024-07-01');
CREATE TABLE parts.measurements_2024_h2 PARTITION OF parts.measurements
    FOR VALUES FROM ('2024-07-01') TO ('2025-01-01') PARTITION BY LIST (region);
CREATE TABLE parts.measurements_2024_h2_eu PARTITION OF parts.measurements_2024_h2 FOR VALUES IN ('eu');
CREATE TABLE parts.measurements_2024_h2_us PARTITION OF parts.measurements_2024_h2 FOR VALUES IN ('us', 'ca');
CREATE TABLE parts.measurements_2024_h2_other PARTITION OF parts.measurements_2024_h2 DEFAULT;
CREATE TABLE parts.measurements_default PARTITION OF parts.measurements DEFAULT;
CREATE INDEX measurements_sensor_idx ON parts.measurements (sensor, taken_on);

INSERT INTO parts.measurements (id, taken_on, region, sensor, value)
SELECT g,
       date '2023-10-01' + (g * 2),
       (ARRAY['eu', 'us', 'ca', 'apac'])[1 + g % 4],
       1 + g % 17,
       round((g * 7.31) % 1000, 2)
FROM generate_series(1, 400) AS g;

-- list by kind, one list partition sub-partitioned by hash, a default partition
CREATE TABLE parts.events (
    id bigint NOT NULL,
    kind text NOT NULL,
    payload text,
    PRIMARY KEY (id, kind)
) PARTITION BY LIST (kind);
CREATE TABLE parts.events_click PARTITION OF parts.events FOR VALUES IN ('click');
CREATE TABLE parts.events_view PARTITION OF parts.events FOR VALUES IN ('view') PARTITION BY HASH (id);
CREATE TABLE parts.events_view_0 PARTITION OF parts.events_view FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE parts.events_view_1 PARTITION OF parts.events_view FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE parts.events_other PARTITION OF parts.events DEFAULT;
CREATE INDEX events_payload_idx ON parts.events (payload);

INSERT INTO parts.events (id, kind, payload)
SELECT g, (ARRAY['click', 'view', 'view', 'scroll', 'hover'])[1 + g % 5], 'event ' || g
FROM generate_series(1, 500) AS g;

-- hash by id
CREATE TABLE parts.accounts (
    id integer PRIMARY KEY,
    name text NOT NULL,
    balance numeric(12, 2) NOT NULL DEFAULT 0
) PARTITION BY HASH (id);
CREATE TABLE parts.accounts_0 PARTITION OF parts.accounts FOR VALUES WITH (MODULUS 3, REMAINDER 0);
CREATE TABLE parts.accounts_1 PARTITION OF parts.accounts FOR VALUES WITH (MODULUS 3, REMAINDER 1);
CREATE TABLE parts.accounts_2 PARTITION OF parts.accounts FOR VALUES WITH (MODULUS 3, REMAINDER 2);

INSERT INTO parts.accounts (id, name, balance)
SELECT g, 'account ' || g, g * 3.5 FROM generate_series(1, 300) AS g;

-- a plain table referencing a partitioned table (and a hash-partitioned one)
CREATE TABLE parts.notes (
    id integer PRIMARY KEY,
    measurement_id integer NOT NULL,
    measurement_on date NOT NULL,
    measurement_region text NOT NULL,
    account_id integer REFERENCES parts.accounts (id),
    body text NOT NULL,
    CONSTRAINT notes_measurement_fk FOREIGN KEY (measurement_id, measurement_on, measurement_region)
        REFERENCES parts.measurements (id, taken_on, region)
);
INSERT INTO parts.notes (id, measurement_id, measurement_on, measurement_region, account_id, body)
SELECT g, m.id, m.taken_on, m.region, 1 + g % 300, 'note on measurement ' || m.id
FROM generate_series(1, 200) AS g
JOIN parts.measurements m ON m.id = g * 2;
