-- The backups export and the audit list are written as they are read, a page at a time in key
-- order (`Store::view_page`). With a tenant, `(view, tenant_id)` alone would make every page
-- read and sort all of that tenant's rows; with the key in the index each page reads its rows
-- in order and stops at the limit. The new index serves every query the old one did.
CREATE INDEX read_model_by_tenant_key ON read_model (view, tenant_id, key);
DROP INDEX read_model_by_tenant;
