-- Names that need quoting: spaces, upper case, a dot inside a name, a double quote inside a name, non-ASCII,
-- reserved words; in schemas, tables, columns, indexes and constraints, with foreign keys between them.
CREATE SCHEMA "Sales Ops";
CREATE SCHEMA "a.b";
CREATE SCHEMA "Bücher";

CREATE TABLE "Sales Ops"."Customers" (
    "Id" integer PRIMARY KEY,
    "Full Name" text NOT NULL,
    "E-Mail" text UNIQUE
);
INSERT INTO "Sales Ops"."Customers" ("Id", "Full Name", "E-Mail")
SELECT g, 'Customer ' || g, 'c' || g || '@example.com' FROM generate_series(1, 300) AS g;

CREATE TABLE "Sales Ops"."Order Items" (
    "order" integer NOT NULL,
    "line no" integer NOT NULL,
    "Customer" integer NOT NULL,
    "select" text NOT NULL,
    quantity integer NOT NULL CONSTRAINT "quantity > 0" CHECK (quantity > 0),
    CONSTRAINT "Order Items pkey" PRIMARY KEY ("order", "line no"),
    CONSTRAINT "Order Items → Customers" FOREIGN KEY ("Customer") REFERENCES "Sales Ops"."Customers" ("Id")
);
CREATE INDEX "Order Items by Customer" ON "Sales Ops"."Order Items" ("Customer");
INSERT INTO "Sales Ops"."Order Items" ("order", "line no", "Customer", "select", quantity)
SELECT 1 + g / 3, g % 3, 1 + g % 300, 'item ' || g, 1 + g % 7 FROM generate_series(0, 599) AS g;

-- a dot inside the schema's and the table's names
CREATE TABLE "a.b"."c.d" (
    id integer PRIMARY KEY,
    "x.y" text NOT NULL
);
INSERT INTO "a.b"."c.d" (id, "x.y") SELECT g, 'dotted ' || g FROM generate_series(1, 250) AS g;

-- a double quote (and an apostrophe) inside a name
CREATE TABLE public."say ""hi"" it's" (
    id integer PRIMARY KEY,
    "what ""he"" said" text NOT NULL,
    customer integer REFERENCES "Sales Ops"."Customers" ("Id") ON DELETE CASCADE
);
INSERT INTO public."say ""hi"" it's" (id, "what ""he"" said", customer)
SELECT g, 'he said "' || g || '"', 1 + (g * 7) % 300 FROM generate_series(1, 300) AS g;

-- non-ASCII names
CREATE TABLE "Bücher"."Bücher" (
    "Nr" integer PRIMARY KEY,
    "Titel" text NOT NULL,
    "Größe" integer NOT NULL
);
CREATE UNIQUE INDEX "Bücher_Titel_größe" ON "Bücher"."Bücher" ("Titel", "Größe");
INSERT INTO "Bücher"."Bücher" ("Nr", "Titel", "Größe")
SELECT g, 'Buch Nummer ' || g || ' – Übersicht', 100 + g FROM generate_series(1, 300) AS g;

-- reserved words as names
CREATE TABLE public."user" (
    "user" text PRIMARY KEY,
    "group" text NOT NULL,
    "table" integer NOT NULL
);
INSERT INTO public."user" ("user", "group", "table")
SELECT 'user' || lpad(g::text, 3, '0'), 'group ' || (g % 10), g FROM generate_series(1, 300) AS g;

-- a plain lower-case name in the upper-case schema, referencing the reserved-word table
CREATE TABLE "Sales Ops".logins (
    id integer PRIMARY KEY,
    "user" text NOT NULL REFERENCES public."user" ("user"),
    at timestamptz NOT NULL
);
INSERT INTO "Sales Ops".logins (id, "user", at)
SELECT g, 'user' || lpad((1 + g % 300)::text, 3, '0'), timestamptz '2024-03-01 00:00+00' + g * interval '17 minutes'
FROM generate_series(1, 400) AS g;
