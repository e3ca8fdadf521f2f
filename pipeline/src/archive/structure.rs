//! The 3CX structure of a backup: the database tables it must hold, as `DbTables/<name>.csv`,
//! and which of them an archive holds.

use std::io::{Read, Seek};

use zip::ZipArchive;

use super::names::entry_name;

/// The tables a 3CX backup must contain (as `DbTables/<name>.csv`) to be restorable.
pub const CORE_TABLES: &[&str] = &[
    "parameter",
    "tenant",
    "dn",
    "extension",
    "users",
    "queue",
    "ringgroup",
    "ivr",
    "gateway",
    "externalline",
];

/// Folder of the database tables inside a 3CX backup.
pub(super) const DB_TABLES: &str = "DbTables/";

/// Names of the tables directly under `DbTables/`, sorted and de-duplicated.
pub(super) fn table_names<R: Read + Seek>(archive: &ZipArchive<R>) -> Vec<String> {
    let mut tables: Vec<String> = archive
        .file_names_raw()
        .filter_map(|raw| {
            let name = entry_name(raw);
            let table = name.strip_prefix(DB_TABLES)?.strip_suffix(".csv")?;
            (!table.is_empty() && !table.contains('/')).then(|| table.to_owned())
        })
        .collect();
    tables.sort();
    tables.dedup();
    tables
}

/// Whether any entry lives under `DbTables/`.
pub(super) fn has_db_tables<R: Read + Seek>(archive: &ZipArchive<R>) -> bool {
    archive
        .file_names_raw()
        .any(|raw| entry_name(raw).starts_with(DB_TABLES))
}

/// Required tables not found (sorted `found`), led by `"DbTables/"` if the folder is absent.
pub(super) fn missing_tables(found: &[String], has_folder: bool, required: &[&str]) -> Vec<String> {
    let mut missing: Vec<String> = Vec::new();
    if !has_folder {
        missing.push(DB_TABLES.to_owned());
    }
    missing.extend(
        required
            .iter()
            .filter(|t| found.binary_search_by(|f| f.as_str().cmp(t)).is_err())
            .map(|t| (*t).to_owned()),
    );
    missing
}
