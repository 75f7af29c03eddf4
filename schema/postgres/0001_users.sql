-- mailtable schema 1 (PostgreSQL): the article's single table plus indexes.
CREATE TABLE IF NOT EXISTS users (
  username TEXT NOT NULL,
  domain TEXT NOT NULL,
  mailbox TEXT NOT NULL,
  password TEXT NULL
);
CREATE INDEX IF NOT EXISTS users_domain_username ON users (domain, username);
CREATE INDEX IF NOT EXISTS users_mailbox ON users (mailbox);
CREATE INDEX IF NOT EXISTS users_domain_wildcards ON users (domain, strpos(username, '%'));
CREATE INDEX IF NOT EXISTS users_wildcard_targets ON users (strpos(mailbox, '%'));
