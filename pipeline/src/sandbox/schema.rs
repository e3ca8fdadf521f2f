//! The 3CX-shaped database a restore test loads into (`database_single`), from what is public
//! of the 3CX v20 schema (`reference/3cx.md`): tables with their primary keys, the foreign keys
//! between them (added after the load, so a broken reference is named, not a load-order error),
//! the settings a PBX cannot start without, and the counts compared with the manifest.

/// One table: its name and its `CREATE TABLE` body. In load order.
pub const TABLES: &[(&str, &str)] = &[
    ("parameter", "name text PRIMARY KEY, value text"),
    ("tenant", "idtenant integer PRIMARY KEY, name text NOT NULL"),
    ("calendar", "idcalendar integer PRIMARY KEY, name text"),
    (
        "dn",
        "iddn integer PRIMARY KEY, value text NOT NULL, status integer, fkidtenant integer NOT NULL, fkidcalendar integer",
    ),
    ("dnprop", "fkiddn integer NOT NULL, name text NOT NULL, value text, PRIMARY KEY (fkiddn, name)"),
    ("extension", "fkiddn integer PRIMARY KEY, authid text, authpswd text, outcid text"),
    (
        "users",
        "idusers integer PRIMARY KEY, fkidextension integer NOT NULL, firstname text, lastname text, email text",
    ),
    ("queue", "fkiddn integer PRIMARY KEY, name text, pollingstrategy integer"),
    ("queue2dn", "fkidqueue integer NOT NULL, fkiddn integer NOT NULL, PRIMARY KEY (fkidqueue, fkiddn)"),
    ("ringgroup", "fkiddn integer PRIMARY KEY, name text, ringstrategy integer"),
    (
        "ringgroup2dn",
        "fkidringgroup integer NOT NULL, fkiddn integer NOT NULL, PRIMARY KEY (fkidringgroup, fkiddn)",
    ),
    ("ivr", "fkiddn integer PRIMARY KEY, name text, timeout integer"),
    (
        "ivrmenuitem",
        "fkidivr integer NOT NULL, digit text NOT NULL, fkiddn integer NOT NULL, PRIMARY KEY (fkidivr, digit)",
    ),
    ("gateway", "idgateway integer PRIMARY KEY, name text, host text, port integer"),
    ("externalline", "fkiddn integer PRIMARY KEY, fkidgateway integer NOT NULL, number text"),
];

/// Tables a backup cannot be restored without (the rest are loaded when present): the core
/// tables the Verified rung already requires.
pub const REQUIRED_TABLES: &[&str] = crate::archive::CORE_TABLES;

/// `(table, column, referenced table, referenced column)`.
pub const FOREIGN_KEYS: &[(&str, &str, &str, &str)] = &[
    ("dn", "fkidtenant", "tenant", "idtenant"),
    ("dn", "fkidcalendar", "calendar", "idcalendar"),
    ("dnprop", "fkiddn", "dn", "iddn"),
    ("extension", "fkiddn", "dn", "iddn"),
    ("users", "fkidextension", "extension", "fkiddn"),
    ("queue", "fkiddn", "dn", "iddn"),
    ("queue2dn", "fkidqueue", "queue", "fkiddn"),
    ("queue2dn", "fkiddn", "dn", "iddn"),
    ("ringgroup", "fkiddn", "dn", "iddn"),
    ("ringgroup2dn", "fkidringgroup", "ringgroup", "fkiddn"),
    ("ringgroup2dn", "fkiddn", "dn", "iddn"),
    ("ivr", "fkiddn", "dn", "iddn"),
    ("ivrmenuitem", "fkidivr", "ivr", "fkiddn"),
    ("ivrmenuitem", "fkiddn", "dn", "iddn"),
    ("externalline", "fkiddn", "dn", "iddn"),
    ("externalline", "fkidgateway", "gateway", "idgateway"),
];

/// Settings (`parameter.name`) a 3CX PBX cannot start without.
pub const REQUIRED_SETTINGS: &[&str] = &[
    "FQDN",
    "VERSION",
    "SIPPORT",
    "TUNNELPORT",
    "RTPPORTSTART",
    "RTPPORTEND",
    "TIMEZONE",
    "LANGUAGE",
];

/// The restored counts, in the order of `ManifestCounts`' fields.
pub const COUNTS_SQL: &str = "SELECT \
    (SELECT count(*) FROM extension), (SELECT count(*) FROM queue), \
    (SELECT count(*) FROM ringgroup), (SELECT count(*) FROM ivr), \
    (SELECT count(*) FROM gateway), (SELECT count(*) FROM parameter)";

/// The DDL creating every table (without foreign keys).
pub fn create_tables_sql() -> String {
    TABLES
        .iter()
        .map(|(name, body)| format!("CREATE TABLE {name} ({body});\n"))
        .collect()
}

/// The DDL adding one foreign key.
pub fn foreign_key_sql(
    (table, column, referenced, referenced_column): (&str, &str, &str, &str),
) -> String {
    format!(
        "ALTER TABLE {table} ADD CONSTRAINT fk_{table}_{column}_{referenced} \
         FOREIGN KEY ({column}) REFERENCES {referenced} ({referenced_column})"
    )
}
