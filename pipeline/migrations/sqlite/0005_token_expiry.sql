ALTER TABLE api_tokens ADD COLUMN expires_at bigint;
UPDATE api_tokens SET expires_at = CAST(strftime('%s', 'now') AS integer) + 7776000;
CREATE INDEX api_tokens_by_email ON api_tokens (email);
CREATE INDEX sessions_by_email ON sessions (email);
