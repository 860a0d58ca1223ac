-- One row the store check writes through the writer connection and reads back through a reader:
-- proof that a commit really reaches the database (issue 12: a full disk).
CREATE TABLE store_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    token TEXT NOT NULL,
    written_at TEXT NOT NULL,
    -- Written only while the store is recovering, to prove there is room for more than one row.
    padding BLOB NOT NULL DEFAULT x''
);
