-- Table inheritance: a parent holding rows of its own, two children adding columns, a CHECK on the parent
-- (inherited by the children), a child with a primary key of its own and one without an index at all.
CREATE SCHEMA inh;

CREATE TABLE inh.vehicles (
    id integer PRIMARY KEY,
    maker text NOT NULL,
    wheels integer NOT NULL,
    registered_on date NOT NULL,
    CONSTRAINT vehicles_wheels_check CHECK (wheels BETWEEN 0 AND 18)
);
CREATE INDEX vehicles_maker_idx ON inh.vehicles (maker);

CREATE TABLE inh.cars (
    seats integer NOT NULL DEFAULT 5,
    PRIMARY KEY (id)
) INHERITS (inh.vehicles);

CREATE TABLE inh.trucks (
    payload_kg integer NOT NULL,
    axles integer NOT NULL DEFAULT 2
) INHERITS (inh.vehicles);
ALTER TABLE inh.trucks ADD CONSTRAINT trucks_payload_check CHECK (payload_kg > 0);

INSERT INTO inh.vehicles (id, maker, wheels, registered_on)
SELECT g, (ARRAY['velo', 'moto', 'cart'])[1 + g % 3], g % 4, date '2020-01-01' + g
FROM generate_series(1, 200) AS g;

INSERT INTO inh.cars (id, maker, wheels, registered_on, seats)
SELECT 1000 + g, (ARRAY['alfa', 'bmw', 'citroen', 'dacia'])[1 + g % 4], 4, date '2021-01-01' + g, 2 + g % 6
FROM generate_series(1, 300) AS g;

INSERT INTO inh.trucks (id, maker, wheels, registered_on, payload_kg, axles)
SELECT 5000 + g, (ARRAY['man', 'scania', 'volvo'])[1 + g % 3], 6 + 2 * (g % 5), date '2019-06-01' + g,
       1000 * (1 + g % 20), 2 + g % 3
FROM generate_series(1, 250) AS g;
