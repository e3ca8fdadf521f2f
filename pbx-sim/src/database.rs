//! The simulated PBX database: a small, consistent, seeded copy of the tables a 3CX v20 backup
//! carries under `DbTables/`, and the CSV format they are written in.
//!
//! # Contents
//! [`Database::generate`] builds every table from the PBX name, the seed and the number of
//! extensions (the same inputs always give the same rows, byte for byte). Queues, ring groups
//! and IVRs scale at about one per ten extensions (at least one each), trunks (gateways) at one
//! per fifty extensions (at least one). All foreign keys in [`FOREIGN_KEYS`] hold, except under
//! [`Fault::DanglingForeignKey`], which adds one `queue2dn` row whose `fkiddn` is not in `dn`.
//!
//! [`TABLES`] lists the tables in an order that loads without foreign-key violations
//! (referenced tables first), with their PostgreSQL column types.
//!
//! # CSV format
//! One file per table, made to load with PostgreSQL's `COPY <table> FROM ... (FORMAT csv, HEADER)`:
//! - UTF-8, no byte-order mark, every line (the last one too) ends with `\n` (never `\r\n`);
//! - the first line is the header: the column names, in table order, comma-separated;
//! - fields are separated by `,`; a field is quoted with `"` (RFC 4180, an inner `"` doubled)
//!   when it contains `,`, `"`, `\n` or `\r`, when it is the empty string, or when it is `\.`;
//! - an empty unquoted field is SQL `NULL`; a quoted empty field `""` is the empty string;
//! - integers are written in decimal; text is written as is.

use std::io::{self, Write};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::Fault;

/// One column of a table: its name and PostgreSQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Column name as in the 3CX database.
    pub name: &'static str,
    /// PostgreSQL type (`integer` or `text`).
    pub sql_type: &'static str,
}

/// A table's name and columns (its schema, without rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableDef {
    /// Table name; the backup entry is `DbTables/<name>.csv`.
    pub name: &'static str,
    /// Columns, in CSV order.
    pub columns: &'static [Column],
}

impl TableDef {
    /// A `CREATE TABLE` statement for this table (types only, no constraints).
    pub fn create_sql(&self) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("{} {}", c.name, c.sql_type))
            .collect();
        format!("CREATE TABLE {} ({})", self.name, cols.join(", "))
    }

    /// The CSV header line (without the line end).
    pub fn header(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|c| c.name).collect();
        names.join(",")
    }
}

/// A foreign key between two tables of [`TABLES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForeignKey {
    /// Referencing table.
    pub table: &'static str,
    /// Referencing column.
    pub column: &'static str,
    /// Referenced table.
    pub references: &'static str,
    /// Referenced column.
    pub references_column: &'static str,
}

const fn int(name: &'static str) -> Column {
    Column {
        name,
        sql_type: "integer",
    }
}

const fn text(name: &'static str) -> Column {
    Column {
        name,
        sql_type: "text",
    }
}

const fn def(name: &'static str, columns: &'static [Column]) -> TableDef {
    TableDef { name, columns }
}

/// Every table of the simulated database, referenced tables before referencing ones.
pub const TABLES: &[TableDef] = &[
    def("parameter", &[text("name"), text("value")]),
    def("tenant", &[int("idtenant"), text("name")]),
    def("calendar", &[int("idcalendar"), text("name")]),
    def(
        "dn",
        &[
            int("iddn"),
            text("value"),
            int("status"),
            int("fkidtenant"),
            int("fkidcalendar"),
        ],
    ),
    def("dnprop", &[int("fkiddn"), text("name"), text("value")]),
    def(
        "extension",
        &[
            int("fkiddn"),
            text("authid"),
            text("authpswd"),
            text("outcid"),
        ],
    ),
    def(
        "users",
        &[
            int("idusers"),
            int("fkidextension"),
            text("firstname"),
            text("lastname"),
            text("email"),
        ],
    ),
    def(
        "queue",
        &[int("fkiddn"), text("name"), int("pollingstrategy")],
    ),
    def("queue2dn", &[int("fkidqueue"), int("fkiddn")]),
    def(
        "ringgroup",
        &[int("fkiddn"), text("name"), int("ringstrategy")],
    ),
    def("ringgroup2dn", &[int("fkidringgroup"), int("fkiddn")]),
    def("ivr", &[int("fkiddn"), text("name"), int("timeout")]),
    def(
        "ivrmenuitem",
        &[int("fkidivr"), text("digit"), int("fkiddn")],
    ),
    def(
        "gateway",
        &[int("idgateway"), text("name"), text("host"), int("port")],
    ),
    def(
        "externalline",
        &[int("fkiddn"), int("fkidgateway"), text("number")],
    ),
];

const fn fk(
    table: &'static str,
    column: &'static str,
    references: &'static str,
    references_column: &'static str,
) -> ForeignKey {
    ForeignKey {
        table,
        column,
        references,
        references_column,
    }
}

/// Every foreign key of the simulated database.
pub const FOREIGN_KEYS: &[ForeignKey] = &[
    fk("dn", "fkidtenant", "tenant", "idtenant"),
    fk("dn", "fkidcalendar", "calendar", "idcalendar"),
    fk("dnprop", "fkiddn", "dn", "iddn"),
    fk("extension", "fkiddn", "dn", "iddn"),
    fk("users", "fkidextension", "extension", "fkiddn"),
    fk("queue", "fkiddn", "dn", "iddn"),
    fk("queue2dn", "fkidqueue", "queue", "fkiddn"),
    fk("queue2dn", "fkiddn", "extension", "fkiddn"),
    fk("queue2dn", "fkiddn", "dn", "iddn"),
    fk("ringgroup", "fkiddn", "dn", "iddn"),
    fk("ringgroup2dn", "fkidringgroup", "ringgroup", "fkiddn"),
    fk("ringgroup2dn", "fkiddn", "extension", "fkiddn"),
    fk("ivr", "fkiddn", "dn", "iddn"),
    fk("ivrmenuitem", "fkidivr", "ivr", "fkiddn"),
    fk("ivrmenuitem", "fkiddn", "dn", "iddn"),
    fk("externalline", "fkiddn", "dn", "iddn"),
    fk("externalline", "fkidgateway", "gateway", "idgateway"),
];

/// The `parameter` names a PBX cannot start without; every generated database has them all.
pub fn required_parameters() -> &'static [&'static str] {
    &[
        "FQDN",
        "VERSION",
        "SIPPORT",
        "TUNNELPORT",
        "RTPPORTSTART",
        "RTPPORTEND",
        "TIMEZONE",
        "LANGUAGE",
    ]
}

/// The 3CX version string the simulator claims to be.
pub const PBX_VERSION: &str = "20.0.10.915";

/// Row and item counts of the things a backup manifest records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestCounts {
    /// Rows of `extension` (XAPI `Users`).
    pub extensions: u64,
    /// Rows of `queue` (XAPI `Queues`).
    pub queues: u64,
    /// Rows of `ringgroup` (XAPI `RingGroups`).
    pub ring_groups: u64,
    /// Rows of `ivr` (XAPI `Receptionists`).
    pub ivrs: u64,
    /// Rows of `gateway` (XAPI `Trunks`).
    pub trunks: u64,
    /// Rows of `parameter` (XAPI `Parameters`).
    pub settings: u64,
}

/// One field: `None` is SQL `NULL`.
pub type Field = Option<String>;

/// A table with its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The table's schema.
    pub def: TableDef,
    /// Rows; each has exactly one field per column.
    pub rows: Vec<Vec<Field>>,
}

impl Table {
    /// The table name.
    pub fn name(&self) -> &'static str {
        self.def.name
    }

    /// Writes the table as CSV (see the module documentation for the exact format).
    pub fn write_csv<W: Write>(&self, out: &mut W) -> io::Result<()> {
        out.write_all(self.def.header().as_bytes())?;
        out.write_all(b"\n")?;
        for row in &self.rows {
            for (i, field) in row.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                if let Some(value) = field {
                    write_field(out, value)?;
                }
            }
            out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// The CSV text of this table.
    pub fn to_csv(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_csv(&mut out);
        out
    }
}

fn write_field<W: Write>(out: &mut W, value: &str) -> io::Result<()> {
    let needs_quotes = value.is_empty() || value == "\\." || value.contains([',', '"', '\n', '\r']);
    if needs_quotes {
        out.write_all(b"\"")?;
        out.write_all(value.replace('"', "\"\"").as_bytes())?;
        out.write_all(b"\"")
    } else {
        out.write_all(value.as_bytes())
    }
}

/// The whole seeded database of one simulated PBX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    tables: Vec<Table>,
}

const FIRST_NAMES: &[&str] = &[
    "Anna", "Ben", "Chloé", "David", "Eva", "Farid", "Grace", "Hiro", "Inès", "Jonas", "Kai",
    "Lena", "Marta", "Noah", "Zoë",
];
const LAST_NAMES: &[&str] = &[
    "Müller",
    "Smith, Jr.",
    "O'Neil",
    "Nguyen",
    "García",
    "Kowalski",
    "Doe \"DJ\"",
    "Schmidt",
    "Rossi",
    "Yılmaz",
];
const TIMEZONES: &[&str] = &["Europe/Berlin", "Europe/London", "America/New_York", "UTC"];
const LANGUAGES: &[&str] = &["en", "de", "fr", "es", "it"];

fn some(value: impl ToString) -> Field {
    Some(value.to_string())
}

fn token(rng: &mut StdRng, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..len)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// Picks `count` distinct items of `from` (in a seeded order).
fn pick(rng: &mut StdRng, from: &[u64], count: usize) -> Vec<u64> {
    let mut pool = from.to_vec();
    let count = count.min(pool.len());
    for i in 0..count {
        let j = rng.gen_range(i..pool.len());
        pool.swap(i, j);
    }
    pool.truncate(count);
    pool
}

impl Database {
    /// Generates the database of the PBX `name` with `extensions` extensions (at least one)
    /// from `seed`. Only [`Fault::DanglingForeignKey`] changes the data; other faults are ignored.
    pub fn generate(name: &str, seed: u64, extensions: u32, fault: Option<Fault>) -> Database {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = u64::from(extensions.max(1));
        let groups = (n / 10).max(1);
        let trunks = (n / 50).max(1);
        // Number plan: extensions from 1*scale, IVRs 6*scale, ring groups 7*scale, queues
        // 8*scale, external lines 9*scale; scale grows with the PBX so numbers never collide.
        let mut scale = 100u64;
        while n > 4 * scale || groups > scale || trunks > scale {
            scale *= 10;
        }
        let fqdn = format!("{name}.pbx.example");

        let mut dn = Vec::new();
        let mut dnprop = Vec::new();
        let mut next_id = 1u64;
        let mut add_dn = |number: u64, calendar: Option<u64>, rows: &mut Vec<Vec<Field>>| {
            let id = next_id;
            next_id += 1;
            rows.push(vec![
                some(id),
                some(number),
                some(1),
                some(1),
                calendar.map(some).unwrap_or(None),
            ]);
            id
        };

        let mut extension = Vec::new();
        let mut users = Vec::new();
        let mut ext_ids = Vec::new();
        for i in 0..n {
            let number = scale + i;
            let id = add_dn(number, None, &mut dn);
            ext_ids.push(id);
            let outcid = if i % 3 == 2 {
                None
            } else {
                some(format!("+4420794{number:05}"))
            };
            extension.push(vec![
                some(id),
                some(token(&mut rng, 10)),
                some(token(&mut rng, 12)),
                outcid,
            ]);
            let first = FIRST_NAMES[rng.gen_range(0..FIRST_NAMES.len())];
            let last = LAST_NAMES[rng.gen_range(0..LAST_NAMES.len())];
            let local: String = first
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
                .to_ascii_lowercase();
            users.push(vec![
                some(i + 1),
                some(id),
                some(first),
                some(last),
                some(format!("{local}.{number}@{fqdn}")),
            ]);
            dnprop.push(vec![
                some(id),
                some("VMAIL_PIN"),
                some(format!("{:04}", rng.gen_range(0..10_000))),
            ]);
            dnprop.push(vec![
                some(id),
                some("RING_TIME"),
                some(rng.gen_range(10..=40)),
            ]);
            if i % 5 == 4 {
                dnprop.push(vec![some(id), some("NOTE"), some("")]);
            }
        }

        let mut queue = Vec::new();
        let mut queue2dn = Vec::new();
        let mut queue_ids = Vec::new();
        for k in 0..groups {
            let id = add_dn(8 * scale + k, Some(1), &mut dn);
            queue_ids.push(id);
            queue.push(vec![
                some(id),
                some(format!("Queue {}", k + 1)),
                some(rng.gen_range(0..=5)),
            ]);
            dnprop.push(vec![
                some(id),
                some("DISPLAY_NAME"),
                some(format!("Support, line {}", k + 1)),
            ]);
            let agents = rng.gen_range(2..=4);
            for agent in pick(&mut rng, &ext_ids, agents) {
                queue2dn.push(vec![some(id), some(agent)]);
            }
        }

        let mut ringgroup = Vec::new();
        let mut ringgroup2dn = Vec::new();
        let mut ringgroup_ids = Vec::new();
        for k in 0..groups {
            let id = add_dn(7 * scale + k, None, &mut dn);
            ringgroup_ids.push(id);
            ringgroup.push(vec![
                some(id),
                some(format!("Ring group {}", k + 1)),
                some(rng.gen_range(0..=2)),
            ]);
            let members = rng.gen_range(2..=5);
            for member in pick(&mut rng, &ext_ids, members) {
                ringgroup2dn.push(vec![some(id), some(member)]);
            }
        }

        let mut ivr = Vec::new();
        let mut ivrmenuitem = Vec::new();
        let targets: Vec<u64> = ext_ids
            .iter()
            .chain(&queue_ids)
            .chain(&ringgroup_ids)
            .copied()
            .collect();
        for k in 0..groups {
            let id = add_dn(6 * scale + k, Some(1), &mut dn);
            ivr.push(vec![
                some(id),
                some(format!("Main menu {}", k + 1)),
                some(rng.gen_range(5..=30)),
            ]);
            for digit in 1..=3 {
                let target = targets[rng.gen_range(0..targets.len())];
                ivrmenuitem.push(vec![some(id), some(digit), some(target)]);
            }
        }

        let mut gateway = Vec::new();
        let mut externalline = Vec::new();
        for k in 0..trunks {
            let gw = k + 1;
            gateway.push(vec![
                some(gw),
                some(format!("SIP trunk {gw}")),
                some(format!("sip{gw}.provider.example")),
                some(5060),
            ]);
            let id = add_dn(9 * scale + k, None, &mut dn);
            externalline.push(vec![
                some(id),
                some(gw),
                some(format!("+44207946{:04}", rng.gen_range(0..10_000))),
            ]);
        }

        if fault == Some(Fault::DanglingForeignKey) {
            let missing = next_id + 1000;
            queue2dn.push(vec![some(queue_ids[0]), some(missing)]);
        }

        let parameter: Vec<Vec<Field>> = [
            ("FQDN", fqdn.clone()),
            ("VERSION", PBX_VERSION.to_owned()),
            ("SIPPORT", "5060".to_owned()),
            ("TUNNELPORT", "5090".to_owned()),
            ("RTPPORTSTART", "9000".to_owned()),
            ("RTPPORTEND", "10999".to_owned()),
            (
                "TIMEZONE",
                TIMEZONES[rng.gen_range(0..TIMEZONES.len())].to_owned(),
            ),
            (
                "LANGUAGE",
                LANGUAGES[rng.gen_range(0..LANGUAGES.len())].to_owned(),
            ),
            ("HTTPPORT", "5000".to_owned()),
            ("HTTPSPORT", "5001".to_owned()),
            ("MAXSIMCALLS", (4 * n).to_string()),
            ("DIALCODEVMAIL", "999".to_owned()),
            (
                "EXTERNALIP",
                format!("203.0.113.{}", rng.gen_range(1..=254)),
            ),
            (
                "LICENSEKEY",
                format!(
                    "{}-{}-{}-{}",
                    token(&mut rng, 4),
                    token(&mut rng, 4),
                    token(&mut rng, 4),
                    token(&mut rng, 4)
                )
                .to_uppercase(),
            ),
            ("COMPANYNAME", format!("{name}, Ltd.")),
        ]
        .into_iter()
        .map(|(k, v)| vec![some(k), Some(v)])
        .collect();

        let tenant = vec![vec![some(1), some(name)]];
        let calendar = vec![
            vec![some(1), some("Office hours")],
            vec![some(2), some("Holidays")],
        ];

        let mut by_name = vec![
            ("parameter", parameter),
            ("tenant", tenant),
            ("calendar", calendar),
            ("dn", dn),
            ("dnprop", dnprop),
            ("extension", extension),
            ("users", users),
            ("queue", queue),
            ("queue2dn", queue2dn),
            ("ringgroup", ringgroup),
            ("ringgroup2dn", ringgroup2dn),
            ("ivr", ivr),
            ("ivrmenuitem", ivrmenuitem),
            ("gateway", gateway),
            ("externalline", externalline),
        ];
        let tables = TABLES
            .iter()
            .map(|def| {
                let pos = by_name
                    .iter()
                    .position(|(name, _)| *name == def.name)
                    .unwrap_or_else(|| unreachable!("every table of TABLES is generated"));
                let (_, rows) = by_name.swap_remove(pos);
                Table { def: *def, rows }
            })
            .collect();
        Database { tables }
    }

    /// All tables, in [`TABLES`] order.
    pub fn tables(&self) -> &[Table] {
        &self.tables
    }

    /// The table called `name`, if there is one.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name() == name)
    }

    fn rows(&self, name: &str) -> u64 {
        self.table(name).map_or(0, |t| t.rows.len() as u64)
    }

    /// The counts of the data in this database.
    pub fn counts(&self) -> ManifestCounts {
        ManifestCounts {
            extensions: self.rows("extension"),
            queues: self.rows("queue"),
            ring_groups: self.rows("ringgroup"),
            ivrs: self.rows("ivr"),
            trunks: self.rows("gateway"),
            settings: self.rows("parameter"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn values(db: &Database, table: &str, column: &str) -> Vec<Option<String>> {
        let t = db.table(table).expect("table exists");
        let idx = t
            .def
            .columns
            .iter()
            .position(|c| c.name == column)
            .expect("column exists");
        t.rows.iter().map(|r| r[idx].clone()).collect()
    }

    fn violations(db: &Database) -> Vec<String> {
        let mut out = Vec::new();
        for key in FOREIGN_KEYS {
            let targets: HashSet<_> = values(db, key.references, key.references_column)
                .into_iter()
                .flatten()
                .collect();
            for value in values(db, key.table, key.column).into_iter().flatten() {
                if !targets.contains(&value) {
                    out.push(format!("{}.{}={value}", key.table, key.column));
                }
            }
        }
        out
    }

    #[test]
    fn foreign_keys_hold_at_several_sizes() {
        for ext in [1, 12, 57, 450, 1000] {
            let db = Database::generate("acme", 7, ext, None);
            assert_eq!(violations(&db), Vec::<String>::new(), "{ext} extensions");
            let numbers = values(&db, "dn", "value");
            let distinct: HashSet<_> = numbers.iter().collect();
            assert_eq!(distinct.len(), numbers.len(), "dn numbers unique at {ext}");
            for t in db.tables() {
                for row in &t.rows {
                    assert_eq!(row.len(), t.def.columns.len(), "{}", t.name());
                }
            }
        }
    }

    #[test]
    fn counts_scale_with_extensions() {
        let db = Database::generate("acme", 1, 12, None);
        let c = db.counts();
        assert_eq!(
            (c.extensions, c.queues, c.ring_groups, c.ivrs, c.trunks),
            (12, 1, 1, 1, 1)
        );
        let c = Database::generate("acme", 1, 1000, None).counts();
        assert_eq!(
            (c.extensions, c.queues, c.ring_groups, c.ivrs, c.trunks),
            (1000, 100, 100, 100, 20)
        );
        assert_eq!(c.settings, db.rows("parameter"));
    }

    #[test]
    fn dangling_fault_breaks_exactly_one_key() {
        let db = Database::generate("acme", 3, 12, Some(Fault::DanglingForeignKey));
        let bad = violations(&db);
        // queue2dn.fkiddn references both extension and dn: one row, two broken keys.
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(bad.iter().all(|b| b.starts_with("queue2dn.fkiddn=")));
    }

    #[test]
    fn generation_is_deterministic_and_seed_dependent() {
        let a = Database::generate("acme", 42, 30, None);
        let b = Database::generate("acme", 42, 30, None);
        let c = Database::generate("acme", 43, 30, None);
        assert_eq!(a, b);
        assert_ne!(a.table("extension"), c.table("extension"));
    }

    #[test]
    fn required_parameters_are_present() {
        let db = Database::generate("acme", 5, 3, None);
        let names: HashSet<_> = values(&db, "parameter", "name")
            .into_iter()
            .flatten()
            .collect();
        for p in required_parameters() {
            assert!(names.contains(*p), "{p} missing");
        }
    }

    #[test]
    fn csv_quoting_and_nulls() {
        let table = Table {
            def: TableDef {
                name: "t",
                columns: &[
                    Column {
                        name: "a",
                        sql_type: "text",
                    },
                    Column {
                        name: "b",
                        sql_type: "text",
                    },
                ],
            },
            rows: vec![
                vec![some("plain"), None],
                vec![some("Smith, Jr."), some("say \"hi\"")],
                vec![some(""), some("two\nlines")],
                vec![some("\\."), some("Zoë")],
            ],
        };
        let csv = String::from_utf8(table.to_csv()).expect("utf-8");
        assert_eq!(
            csv,
            "a,b\nplain,\n\"Smith, Jr.\",\"say \"\"hi\"\"\"\n\"\",\"two\nlines\"\n\"\\.\",Zoë\n"
        );
    }

    #[test]
    fn create_sql_lists_columns() {
        let dn = TABLES.iter().find(|t| t.name == "dn").expect("dn");
        assert_eq!(
            dn.create_sql(),
            "CREATE TABLE dn (iddn integer, value text, status integer, fkidtenant integer, fkidcalendar integer)"
        );
    }
}
