-- The read side and accounts: view rows as JSON documents (kept by the projector, rebuildable
-- from the log), users, sessions and API tokens (only hashes of tokens are stored).
CREATE TABLE read_model
(
  view      text NOT NULL,
  key       text NOT NULL,
  tenant_id text NOT NULL,
  doc       text NOT NULL,
  PRIMARY KEY (view, key)
);
CREATE INDEX read_model_by_tenant ON read_model (view, tenant_id);
CREATE TABLE users
(
  email         text PRIMARY KEY,
  password_hash text NOT NULL,
  role          text NOT NULL,
  tenant_scope  text NOT NULL,
  created_at    text NOT NULL
);
CREATE TABLE sessions
(
  token_hash text   PRIMARY KEY,
  email      text   NOT NULL REFERENCES users (email) ON DELETE CASCADE,
  csrf_token text   NOT NULL,
  expires_at bigint NOT NULL
);
CREATE TABLE api_tokens
(
  token_hash text PRIMARY KEY,
  name       text NOT NULL,
  email      text NOT NULL REFERENCES users (email) ON DELETE CASCADE,
  created_at text NOT NULL
);
