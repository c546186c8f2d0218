-- Extensions (postgresql-contrib): citext columns (a unique one, a citext primary key) and a pg_trgm GIN index
-- and a GiST index, an extension installed in a schema of its own. The test skips this schema on a server
-- that lacks one of the extensions, naming the server and the extension.
CREATE SCHEMA ext;
CREATE SCHEMA trigram;
CREATE EXTENSION IF NOT EXISTS citext;
CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA trigram;

CREATE TABLE ext.members (
    id integer PRIMARY KEY,
    email citext NOT NULL UNIQUE,
    display_name text NOT NULL
);
CREATE INDEX members_name_trgm ON ext.members USING gin (display_name trigram.gin_trgm_ops);
INSERT INTO ext.members (id, email, display_name)
SELECT g, 'Member' || g || '@Example.ORG', 'Member number ' || g || ' of ' || (g % 13) || ' clubs'
FROM generate_series(1, 300) AS g;

CREATE TABLE ext.tags (
    tag citext PRIMARY KEY,
    description text NOT NULL
);
CREATE INDEX tags_description_trgm ON ext.tags USING gist (description trigram.gist_trgm_ops);
INSERT INTO ext.tags (tag, description)
SELECT 'Tag-' || g, 'tag description ' || md5(g::text) FROM generate_series(1, 300) AS g;

CREATE TABLE ext.member_tags (
    member_id integer NOT NULL REFERENCES ext.members (id),
    tag citext NOT NULL REFERENCES ext.tags (tag),
    PRIMARY KEY (member_id, tag)
);
INSERT INTO ext.member_tags (member_id, tag)
SELECT 1 + g % 300, 'tag-' || (1 + (g + g / 300) % 300) FROM generate_series(1, 450) AS g;
