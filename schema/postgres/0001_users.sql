-- mailtable schema 1 (PostgreSQL): the article's single table, unchanged, plus
-- indexes. IF NOT EXISTS everywhere: this step also adopts an existing
-- database that was created with the article's DDL, keeping every row.
CREATE TABLE IF NOT EXISTS users (
  username TEXT NOT NULL,
  domain TEXT NOT NULL,
  mailbox TEXT NOT NULL,
  password TEXT NULL
);
-- Exact lookups (username@domain) and "is this domain ours".
CREATE INDEX IF NOT EXISTS users_domain_username ON users (domain, username);
-- Reverse lookups: which rows deliver to this mailbox (senders).
CREATE INDEX IF NOT EXISTS users_mailbox ON users (mailbox);
-- Wildcard rows of one domain (patterns and the catch-all), found without
-- scanning the domain's other rows: the query repeats this expression
-- (strpos is SQLite's instr).
CREATE INDEX IF NOT EXISTS users_domain_wildcards ON users (domain, strpos(username, '%'));
-- Rows whose target has a % (domain aliases), for reverse lookups.
CREATE INDEX IF NOT EXISTS users_wildcard_targets ON users (strpos(mailbox, '%'));
