-- mailtable schema 2 (PostgreSQL): optional per-mailbox columns.
ALTER TABLE users ADD COLUMN active INTEGER NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN quota TEXT NULL;
