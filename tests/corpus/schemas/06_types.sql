-- User-defined types: enums, domains with CHECKs, composite types (a table column of one, and an array of one),
-- arrays, ranges and a multirange, an exclusion constraint over a range, an enum in a primary key.
CREATE SCHEMA typ;

CREATE TYPE typ.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE typ.priority AS ENUM ('low', 'normal', 'high', 'urgent');
CREATE DOMAIN typ.email AS text CHECK (VALUE ~ '^[^@ ]+@[^@ ]+$');
CREATE DOMAIN typ.positive_int AS integer NOT NULL CHECK (VALUE > 0);
CREATE DOMAIN typ.percent AS numeric(5, 2) CONSTRAINT percent_range CHECK (VALUE BETWEEN 0 AND 100);
CREATE TYPE typ.address AS (street text, zip varchar(10), city text);
CREATE TYPE typ.money_amount AS (amount numeric(12, 2), currency char(3));

CREATE TABLE typ.people (
    id integer PRIMARY KEY,
    email typ.email NOT NULL UNIQUE,
    mood typ.mood NOT NULL DEFAULT 'ok',
    age typ.positive_int,
    home typ.address,
    previous_homes typ.address[],
    tags text[] NOT NULL DEFAULT '{}',
    scores integer[],
    matrix integer[][]
);
INSERT INTO typ.people (id, email, mood, age, home, previous_homes, tags, scores, matrix)
SELECT g,
       'person' || g || '@example.org',
       (ARRAY['sad', 'ok', 'happy']::typ.mood[])[1 + g % 3],
       18 + g % 60,
       ROW(g || ' Elm Street', lpad((g * 37 % 100000)::text, 5, '0'), 'City ' || (g % 12))::typ.address,
       ARRAY[ROW('old ' || g, '0000' || (g % 10), 'Oldtown')::typ.address],
       ARRAY['tag' || (g % 5), 'tag' || (g % 7)],
       ARRAY[g % 10, g % 100, g],
       ARRAY[[g, g + 1], [g + 2, g + 3]]
FROM generate_series(1, 300) AS g;

CREATE TABLE typ.bookings (
    id integer PRIMARY KEY,
    room integer NOT NULL,
    during tstzrange NOT NULL,
    nights daterange,
    price_band numrange,
    blackout datemultirange,
    discount typ.percent,
    cost typ.money_amount,
    EXCLUDE USING gist (during WITH &&)
);
INSERT INTO typ.bookings (id, room, during, nights, price_band, blackout, discount, cost)
SELECT g,
       1 + g % 10,
       tstzrange(timestamptz '2024-01-01 00:00+00' + g * interval '1 day',
                 timestamptz '2024-01-01 00:00+00' + g * interval '1 day' + interval '20 hours'),
       daterange(date '2024-01-01' + g, date '2024-01-02' + g),
       numrange(g, g + 10, '[)'),
       datemultirange(daterange(date '2025-01-01', date '2025-01-05'), daterange(date '2025-02-01' + g % 20, NULL)),
       (g % 100)::numeric(5, 2),
       ROW(g * 10.5, (ARRAY['EUR', 'USD', 'GBP'])[1 + g % 3])::typ.money_amount
FROM generate_series(1, 300) AS g;

-- an enum as part of the primary key
CREATE TABLE typ.queue (
    priority typ.priority NOT NULL,
    position integer NOT NULL,
    item text NOT NULL,
    PRIMARY KEY (priority, position)
);
INSERT INTO typ.queue (priority, position, item)
SELECT (ARRAY['low', 'normal', 'high', 'urgent']::typ.priority[])[1 + g % 4], g / 4, 'job ' || g
FROM generate_series(0, 399) AS g;
