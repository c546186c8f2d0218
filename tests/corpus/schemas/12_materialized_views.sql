-- Materialized views over corpus tables: one with a unique index (so it can be refreshed concurrently), one
-- without any index, one reading another materialized view's table through a view. A materialized view is not
-- restorable by name: it is refreshed after a restore of the tables it reads.
CREATE SCHEMA mv;

CREATE TABLE mv.products (
    id integer PRIMARY KEY,
    name text NOT NULL,
    category text NOT NULL
);
INSERT INTO mv.products (id, name, category)
SELECT g, 'product ' || g, (ARRAY['books', 'games', 'music', 'tools'])[1 + g % 4] FROM generate_series(1, 300) AS g;

CREATE TABLE mv.sales (
    id integer PRIMARY KEY,
    product_id integer NOT NULL REFERENCES mv.products (id),
    sold_on date NOT NULL,
    quantity integer NOT NULL,
    unit_price numeric(10, 2) NOT NULL
);
INSERT INTO mv.sales (id, product_id, sold_on, quantity, unit_price)
SELECT g, 1 + (g * 13) % 300, date '2024-01-01' + g % 90, 1 + g % 5, 2.5 + g % 40
FROM generate_series(1, 600) AS g;

CREATE MATERIALIZED VIEW mv.sales_by_product AS
SELECT p.id AS product_id, p.name, count(s.id) AS sales, coalesce(sum(s.quantity * s.unit_price), 0) AS revenue
FROM mv.products p LEFT JOIN mv.sales s ON s.product_id = p.id
GROUP BY p.id, p.name;
CREATE UNIQUE INDEX sales_by_product_id ON mv.sales_by_product (product_id);

CREATE MATERIALIZED VIEW mv.daily_totals AS
SELECT sold_on, sum(quantity) AS items, sum(quantity * unit_price) AS revenue
FROM mv.sales
GROUP BY sold_on;

CREATE VIEW mv.categories AS SELECT DISTINCT category FROM mv.products;
CREATE MATERIALIZED VIEW mv.category_count AS SELECT count(*) AS categories FROM mv.categories;
