-- Large objects: made with lo_from_bytea, a table holding their oids, one object with a comment, another owner
-- and a grant, objects not referenced by any row.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'corpus_owner') THEN
        CREATE ROLE corpus_owner NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'corpus_reader') THEN
        CREATE ROLE corpus_reader NOLOGIN;
    END IF;
END
$$;

CREATE SCHEMA blobs;

CREATE TABLE blobs.attachments (
    id integer PRIMARY KEY,
    file_name text NOT NULL,
    content oid NOT NULL,
    size integer NOT NULL
);
INSERT INTO blobs.attachments (id, file_name, content, size)
SELECT g,
       'file-' || g || '.txt',
       lo_from_bytea(0, convert_to(repeat('line ' || g || E'\n', 1 + g % 40), 'UTF8')),
       length(repeat('line ' || g || E'\n', 1 + g % 40))
FROM generate_series(1, 200) AS g;

-- two more objects that no row points at (an orphan is still part of the database)
SELECT lo_from_bytea(0, '\x000102030405'::bytea);
SELECT lo_from_bytea(0, decode(repeat('ff', 3000), 'hex'));

DO $$
DECLARE
    first_oid oid;
BEGIN
    SELECT content INTO first_oid FROM blobs.attachments WHERE id = 1;
    EXECUTE format('COMMENT ON LARGE OBJECT %s IS %L', first_oid, 'the first attachment');
    EXECUTE format('ALTER LARGE OBJECT %s OWNER TO corpus_owner', first_oid);
    EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO corpus_reader', first_oid);
END
$$;

CREATE TABLE blobs.thumbnails (
    attachment_id integer PRIMARY KEY REFERENCES blobs.attachments (id) ON DELETE CASCADE,
    image oid,
    width integer NOT NULL,
    height integer NOT NULL
);
INSERT INTO blobs.thumbnails (attachment_id, image, width, height)
SELECT g, CASE WHEN g % 2 = 0 THEN lo_from_bytea(0, decode(md5(g::text), 'hex')) END, 32 + g % 64, 32 + g % 48
FROM generate_series(1, 200) AS g;
