//! Entry names: safe to extract anywhere (not absolute, no `..` or `.` segment, no backslash,
//! drive letter, NUL or control character) and distinct after normalisation (ASCII case folded,
//! trailing `/` dropped).

use std::collections::HashSet;

use crate::archive::fault::ArchiveFault;
use crate::archive::names::name_for_error;

use super::central::Central;

/// Whether a name is safe to extract anywhere: see the module documentation.
fn is_safe_name(name: &[u8]) -> bool {
    if name.is_empty() || name[0] == b'/' {
        return false;
    }
    if name.iter().any(|&b| b < 0x20 || b == 0x7f || b == b'\\') {
        return false;
    }
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    let mut segments = trimmed.split(|&b| b == b'/');
    let drive = |s: &[u8]| s.len() >= 2 && s[0].is_ascii_alphabetic() && s[1] == b':';
    if segments.clone().next().is_some_and(drive) {
        return false;
    }
    segments.all(|s| !s.is_empty() && s != b"." && s != b"..")
}

/// Names safe and distinct after normalisation.
pub(super) fn check_names(central: &[Central]) -> Result<(), ArchiveFault> {
    let mut seen: HashSet<Vec<u8>> = HashSet::with_capacity(central.len());
    for c in central {
        let name = &c.entry.name;
        if !is_safe_name(name) {
            return Err(ArchiveFault::UnsafeName {
                entry: name_for_error(name),
            });
        }
        let normal = name.strip_suffix(b"/").unwrap_or(name).to_ascii_lowercase();
        if !seen.insert(normal) {
            return Err(ArchiveFault::DuplicateEntry {
                entry: name_for_error(name),
            });
        }
    }
    Ok(())
}
