-- Objects that depend on a table's row type or read tables: a function taking a table's row as parameter, a
-- function returning SETOF a table, an index over an expression calling such a function, views over tables
-- (one joining two tables, one over a view), and a CHECK constraint calling a function.
CREATE SCHEMA rt;

CREATE TABLE rt.products (
    id integer PRIMARY KEY,
    name text NOT NULL,
    net_price numeric(10, 2) NOT NULL,
    tax_rate numeric(4, 3) NOT NULL
);
INSERT INTO rt.products (id, name, net_price, tax_rate)
SELECT g, 'product ' || g, 1 + g % 90, (ARRAY[0.07, 0.19, 0.0])[1 + g % 3] FROM generate_series(1, 300) AS g;

CREATE FUNCTION rt.gross_price(p rt.products) RETURNS numeric LANGUAGE sql IMMUTABLE
    AS $$ SELECT round(p.net_price * (1 + p.tax_rate), 2) $$;
CREATE FUNCTION rt.expensive_products(threshold numeric) RETURNS SETOF rt.products LANGUAGE sql STABLE
    AS $$ SELECT * FROM rt.products WHERE net_price > threshold $$;

CREATE FUNCTION rt.is_valid_sku(sku text) RETURNS boolean LANGUAGE sql IMMUTABLE
    AS $$ SELECT sku ~ '^[A-Z]{3}-[0-9]{4}$' $$;

CREATE TABLE rt.orders (
    id integer PRIMARY KEY,
    product_id integer NOT NULL REFERENCES rt.products (id),
    sku text NOT NULL CHECK (rt.is_valid_sku(sku)),
    quantity integer NOT NULL
);
INSERT INTO rt.orders (id, product_id, sku, quantity)
SELECT g, 1 + (g * 11) % 300, 'SKU-' || lpad(g::text, 4, '0'), 1 + g % 9 FROM generate_series(1, 500) AS g;

-- an index over an expression through the row-type function
CREATE INDEX products_gross_idx ON rt.products (rt.gross_price(products));

CREATE VIEW rt.order_lines AS
SELECT o.id, o.quantity, p.name, rt.gross_price(p) AS unit_price, o.quantity * rt.gross_price(p) AS total
FROM rt.orders o JOIN rt.products p ON p.id = o.product_id;
CREATE VIEW rt.big_orders AS SELECT * FROM rt.order_lines WHERE total > 100;

-- a table whose column has another table's row type
CREATE TABLE rt.price_history (
    id integer PRIMARY KEY,
    snapshot rt.products NOT NULL,
    taken_on date NOT NULL
);
INSERT INTO rt.price_history (id, snapshot, taken_on)
SELECT g, p, date '2024-01-01' + g FROM rt.products p JOIN generate_series(1, 300) AS g ON g = p.id;
