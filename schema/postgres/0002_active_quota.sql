-- mailtable schema 2 (PostgreSQL): optional per-mailbox columns.
-- active = 0: login refused (smtpd credentials, Dovecot passdb), mail still
-- accepted and delivered. quota: a Dovecot quota such as 2G (quota_rule).
-- INTEGER, not BOOLEAN, like SQLite's column: the backends read one type.
ALTER TABLE users ADD COLUMN IF NOT EXISTS active INTEGER NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN IF NOT EXISTS quota TEXT NULL;
