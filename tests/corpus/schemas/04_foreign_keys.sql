-- Foreign keys: across schemas (NO ACTION), ON DELETE CASCADE, a self-reference (a tree), a cycle between two
-- tables (one side DEFERRABLE INITIALLY DEFERRED), a composite key.
-- tests/corpus/test_corpus_restores.py also uses this schema for the foreign-key failure cases: it relies on
-- billing.invoices.invoices_customer_fk (NO ACTION) and crm.addresses.addresses_customer_fk (ON DELETE CASCADE).
CREATE SCHEMA crm;
CREATE SCHEMA billing;

CREATE TABLE crm.customers (
    id integer PRIMARY KEY,
    name text NOT NULL,
    country text NOT NULL
);
INSERT INTO crm.customers (id, name, country)
SELECT g, 'customer ' || g, (ARRAY['DE', 'FR', 'IT', 'ES', 'NL'])[1 + g % 5] FROM generate_series(1, 300) AS g;

CREATE TABLE crm.addresses (
    id integer PRIMARY KEY,
    customer_id integer NOT NULL,
    line text NOT NULL,
    CONSTRAINT addresses_customer_fk FOREIGN KEY (customer_id) REFERENCES crm.customers (id) ON DELETE CASCADE
);
CREATE INDEX addresses_customer_idx ON crm.addresses (customer_id);
INSERT INTO crm.addresses (id, customer_id, line)
SELECT g, 1 + g % 300, g || ' Main Street' FROM generate_series(1, 450) AS g;

CREATE TABLE billing.invoices (
    id integer PRIMARY KEY,
    customer_id integer NOT NULL,
    issued_on date NOT NULL,
    CONSTRAINT invoices_customer_fk FOREIGN KEY (customer_id) REFERENCES crm.customers (id)
);
CREATE INDEX invoices_customer_idx ON billing.invoices (customer_id);
INSERT INTO billing.invoices (id, customer_id, issued_on)
SELECT g, 1 + (g * 7) % 300, date '2024-01-01' + g % 365 FROM generate_series(1, 400) AS g;

CREATE TABLE billing.invoice_lines (
    invoice_id integer NOT NULL REFERENCES billing.invoices (id) ON DELETE CASCADE,
    line_no integer NOT NULL,
    amount numeric(10, 2) NOT NULL,
    PRIMARY KEY (invoice_id, line_no)
);
INSERT INTO billing.invoice_lines (invoice_id, line_no, amount)
SELECT 1 + g / 2, g % 2, (g % 97) * 1.25 FROM generate_series(0, 799) AS g;

-- a tree: every category but the roots has a parent
CREATE TABLE crm.categories (
    id integer PRIMARY KEY,
    parent_id integer REFERENCES crm.categories (id),
    name text NOT NULL
);
INSERT INTO crm.categories (id, parent_id, name)
SELECT g, CASE WHEN g <= 5 THEN NULL ELSE g / 5 END, 'category ' || g FROM generate_series(1, 300) AS g;

-- a cycle: each team has a lead employee, each employee a team (deferred, so both can be inserted)
CREATE TABLE crm.teams (
    id integer PRIMARY KEY,
    name text NOT NULL,
    lead_id integer
);
CREATE TABLE crm.employees (
    id integer PRIMARY KEY,
    team_id integer NOT NULL,
    name text NOT NULL,
    CONSTRAINT employees_team_fk FOREIGN KEY (team_id) REFERENCES crm.teams (id) DEFERRABLE INITIALLY DEFERRED
);
ALTER TABLE crm.teams ADD CONSTRAINT teams_lead_fk FOREIGN KEY (lead_id) REFERENCES crm.employees (id);
BEGIN;
INSERT INTO crm.employees (id, team_id, name)
SELECT g, 1 + g % 300, 'employee ' || g FROM generate_series(1, 600) AS g;
INSERT INTO crm.teams (id, name, lead_id)
SELECT g, 'team ' || g, CASE WHEN g % 10 = 0 THEN NULL ELSE g * 2 END FROM generate_series(1, 300) AS g;
COMMIT;

-- a composite foreign key to a composite primary key, across schemas
CREATE TABLE crm.line_notes (
    id integer PRIMARY KEY,
    invoice_id integer NOT NULL,
    line_no integer NOT NULL,
    note text NOT NULL,
    FOREIGN KEY (invoice_id, line_no) REFERENCES billing.invoice_lines (invoice_id, line_no) ON DELETE CASCADE
);
INSERT INTO crm.line_notes (id, invoice_id, line_no, note)
SELECT g, 1 + g, g % 2, 'note ' || g FROM generate_series(1, 250) AS g;
