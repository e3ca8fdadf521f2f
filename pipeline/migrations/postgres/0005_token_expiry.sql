-- API tokens expire: expires_at (Unix seconds). Tokens issued before this migration, which never
-- expired, get the default lifetime (90 days) from the moment it runs.
ALTER TABLE api_tokens ADD COLUMN expires_at bigint;
UPDATE api_tokens SET expires_at = CAST(extract(epoch FROM now()) AS bigint) + 7776000;
CREATE INDEX api_tokens_by_email ON api_tokens (email);
CREATE INDEX sessions_by_email ON sessions (email);
