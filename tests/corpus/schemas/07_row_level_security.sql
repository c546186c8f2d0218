-- Row-level security: a table with RLS enabled and permissive + restrictive policies, a table with RLS enabled
-- and forced (its owner is not a superuser, so the policies apply to it too), per-command policies for roles.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'corpus_owner') THEN
        CREATE ROLE corpus_owner NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'corpus_reader') THEN
        CREATE ROLE corpus_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'corpus_writer') THEN
        CREATE ROLE corpus_writer NOLOGIN;
    END IF;
END
$$;

CREATE SCHEMA sec;
GRANT USAGE ON SCHEMA sec TO corpus_reader, corpus_writer;

CREATE TABLE sec.documents (
    id integer PRIMARY KEY,
    owner_name name NOT NULL,
    classification text NOT NULL CHECK (classification IN ('public', 'internal', 'secret')),
    body text NOT NULL
);
INSERT INTO sec.documents (id, owner_name, classification, body)
SELECT g, (ARRAY['corpus_reader', 'corpus_writer', 'alice'])[1 + g % 3]::name,
       (ARRAY['public', 'internal', 'secret'])[1 + g % 3], 'document ' || g
FROM generate_series(1, 300) AS g;
ALTER TABLE sec.documents ENABLE ROW LEVEL SECURITY;
CREATE POLICY documents_own ON sec.documents FOR ALL TO PUBLIC
    USING (owner_name = current_user) WITH CHECK (owner_name = current_user);
CREATE POLICY documents_public ON sec.documents FOR SELECT TO corpus_reader USING (classification = 'public');
CREATE POLICY documents_no_secret ON sec.documents AS RESTRICTIVE FOR SELECT TO corpus_reader
    USING (classification <> 'secret');
GRANT SELECT ON sec.documents TO corpus_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON sec.documents TO corpus_writer;

CREATE TABLE sec.salaries (
    employee integer PRIMARY KEY,
    team text NOT NULL,
    amount numeric(10, 2) NOT NULL
);
INSERT INTO sec.salaries (employee, team, amount)
SELECT g, 'team ' || (g % 8), 30000 + g * 100 FROM generate_series(1, 300) AS g;
ALTER TABLE sec.salaries OWNER TO corpus_owner;
ALTER TABLE sec.salaries ENABLE ROW LEVEL SECURITY;
ALTER TABLE sec.salaries FORCE ROW LEVEL SECURITY;
CREATE POLICY salaries_owner_reads ON sec.salaries FOR SELECT TO corpus_owner USING (team <> 'team 0');
CREATE POLICY salaries_writer_inserts ON sec.salaries FOR INSERT TO corpus_writer WITH CHECK (amount < 100000);
CREATE POLICY salaries_writer_updates ON sec.salaries FOR UPDATE TO corpus_writer
    USING (team = 'team 1') WITH CHECK (amount < 100000);
GRANT SELECT ON sec.salaries TO corpus_reader;
GRANT INSERT, UPDATE ON sec.salaries TO corpus_writer;

-- RLS enabled without any policy: nobody but the superuser (and, not forced, the owner) sees a row
CREATE TABLE sec.vault (
    id integer PRIMARY KEY,
    secret text NOT NULL
);
INSERT INTO sec.vault (id, secret) SELECT g, md5(g::text) FROM generate_series(1, 250) AS g;
ALTER TABLE sec.vault OWNER TO corpus_owner;
ALTER TABLE sec.vault ENABLE ROW LEVEL SECURITY;
