//! Entry names as text: lossy for reports, and capped for error messages (entry names are
//! archive input).

/// Entry names are archive input: cap what goes into error messages.
const MAX_NAME_IN_ERROR: usize = 200;

/// The entry name as text for reports (lossy, `\` read as `/`).
pub(super) fn entry_name(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).replace('\\', "/")
}

/// The entry name as it may appear in an error message (capped).
pub(super) fn name_for_error(raw: &[u8]) -> String {
    let name = entry_name(raw);
    if name.chars().count() > MAX_NAME_IN_ERROR {
        let mut short: String = name.chars().take(MAX_NAME_IN_ERROR).collect();
        short.push('…');
        short
    } else {
        name
    }
}
