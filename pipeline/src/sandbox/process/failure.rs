//! Restore failures told without backup content: by table, SQLSTATE (and its name), column,
//! constraint and input line — never by PostgreSQL's message or detail, which quote the row's
//! values.

use crate::sandbox::RestoreFailure;

/// A restore failure told by table, SQLSTATE (and its name), column, constraint and input line
/// — never by PostgreSQL's message or detail, which quote the row's values (decrypted backup
/// content).
pub(super) fn database_failure(table: &str, error: &sqlx::Error) -> RestoreFailure {
    let Some(database) = error.as_database_error() else {
        // Not a database error: the connection or the protocol, which carry no row values.
        return RestoreFailure::Rejected(format!("{table}: {error}"));
    };
    let code = database.code().map(|c| c.into_owned()).unwrap_or_default();
    let mut message = format!("{table}: {} ({code})", sqlstate_name(&code));
    if let Some(pg) = database.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        if let Some(column) = pg.column() {
            message.push_str(&format!(", column {column}"));
        }
        if let Some(constraint) = pg.constraint() {
            message.push_str(&format!(", constraint {constraint}"));
        }
        if let Some(line) = pg.r#where().and_then(copy_line) {
            message.push_str(&format!(", line {line}"));
        }
    }
    if code.starts_with("23") {
        RestoreFailure::Integrity(message)
    } else {
        RestoreFailure::Rejected(message)
    }
}

/// The input line number in a `COPY` error context (`COPY t, line 3, column c: "value"`), the
/// only part of it that is not backup content.
fn copy_line(context: &str) -> Option<u64> {
    let rest = context.split(", line ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The condition name of the SQLSTATEs a restore meets (PostgreSQL Appendix A).
fn sqlstate_name(code: &str) -> &'static str {
    match code {
        "23502" => "not_null_violation",
        "23503" => "foreign_key_violation",
        "23505" => "unique_violation",
        "23514" => "check_violation",
        "22001" => "string_data_right_truncation",
        "22003" => "numeric_value_out_of_range",
        "22007" => "invalid_datetime_format",
        "22008" => "datetime_field_overflow",
        "22021" => "character_not_in_repertoire",
        "22P02" => "invalid_text_representation",
        "22P04" => "bad_copy_file_format",
        "53100" => "disk_full",
        "53200" => "out_of_memory",
        "53300" => "too_many_connections",
        "54000" => "program_limit_exceeded",
        "57014" => "query_canceled",
        _ => "database error",
    }
}
