-- Triggers and rules: a plpgsql AFTER ROW audit trigger writing every change into another table, BEFORE ROW
-- triggers that rewrite the row (normalize on insert, bump a revision on update), a statement-level trigger,
-- a disabled trigger, and rules that turn updates and deletes of locked rows into nothing.
CREATE SCHEMA trg;

CREATE TABLE trg.audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name text NOT NULL,
    operation text NOT NULL,
    row_key integer NOT NULL,
    old_row jsonb,
    new_row jsonb
);

CREATE TABLE trg.accounts (
    id integer PRIMARY KEY,
    email text NOT NULL,
    balance numeric(12, 2) NOT NULL,
    revision integer NOT NULL DEFAULT 1
);

CREATE FUNCTION trg.audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO trg.audit_log (table_name, operation, row_key, old_row, new_row)
    VALUES (TG_TABLE_NAME, TG_OP,
            CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END,
            CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE to_jsonb(OLD) END,
            CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE to_jsonb(NEW) END);
    RETURN NULL;
END
$$;

CREATE FUNCTION trg.normalize_email() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.email := lower(trim(NEW.email));
    RETURN NEW;
END
$$;

CREATE FUNCTION trg.bump_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.revision := OLD.revision + 1;
    RETURN NEW;
END
$$;

CREATE FUNCTION trg.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'writes to % are switched off', TG_TABLE_NAME;
END
$$;

CREATE TABLE trg.statement_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name text NOT NULL,
    operation text NOT NULL
);
CREATE FUNCTION trg.log_statement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO trg.statement_log (table_name, operation) VALUES (TG_TABLE_NAME, TG_OP);
    RETURN NULL;
END
$$;
INSERT INTO trg.statement_log (table_name, operation)
SELECT 'history', (ARRAY['INSERT', 'UPDATE', 'DELETE'])[1 + g % 3] FROM generate_series(1, 250) AS g;

CREATE TRIGGER accounts_normalize BEFORE INSERT ON trg.accounts FOR EACH ROW EXECUTE FUNCTION trg.normalize_email();
CREATE TRIGGER accounts_revision BEFORE UPDATE ON trg.accounts FOR EACH ROW EXECUTE FUNCTION trg.bump_revision();
CREATE TRIGGER accounts_audit AFTER INSERT OR UPDATE OR DELETE ON trg.accounts
    FOR EACH ROW EXECUTE FUNCTION trg.audit();
CREATE TRIGGER accounts_statements AFTER INSERT OR UPDATE OR DELETE ON trg.accounts
    FOR EACH STATEMENT EXECUTE FUNCTION trg.log_statement();
CREATE TRIGGER accounts_refuse BEFORE TRUNCATE ON trg.accounts
    FOR EACH STATEMENT EXECUTE FUNCTION trg.refuse();
ALTER TABLE trg.accounts DISABLE TRIGGER accounts_refuse;

-- rows written with the triggers firing: upper-case emails become lower case, updated rows bump revision
INSERT INTO trg.accounts (id, email, balance)
SELECT g, ' User' || g || '@Example.COM ', g * 12.5 FROM generate_series(1, 300) AS g;
UPDATE trg.accounts SET balance = balance + 1 WHERE id % 4 = 0;
UPDATE trg.accounts SET balance = balance + 1 WHERE id % 8 = 0;

CREATE TABLE trg.locked_items (
    id integer PRIMARY KEY,
    locked boolean NOT NULL,
    label text NOT NULL
);
CREATE RULE locked_items_keep AS ON DELETE TO trg.locked_items WHERE OLD.locked DO INSTEAD NOTHING;
CREATE RULE locked_items_frozen AS ON UPDATE TO trg.locked_items WHERE OLD.locked DO INSTEAD NOTHING;
CREATE TRIGGER locked_items_audit AFTER INSERT OR UPDATE OR DELETE ON trg.locked_items
    FOR EACH ROW EXECUTE FUNCTION trg.audit();
INSERT INTO trg.locked_items (id, locked, label)
SELECT g, g % 5 = 1, 'item ' || g FROM generate_series(1, 300) AS g;
