-- The paper venue's state (orders, fills, positions, cash, prices) as one JSON document, replaced
-- after every change, so a paper-mode bot restarts where it stopped. `sigex paper reset` deletes it.
CREATE TABLE paper_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    state      TEXT    NOT NULL,
    updated_at TEXT    NOT NULL
);
