//! How the pages show the PBX's own (native) backups: a word for the fleet page's column and
//! a few lines for the instance page's "Native PBX backups" section, both from the newest
//! reading a capture or the native backup watch took ([`NativeBackups`]) judged with the configured grace — the same
//! judgement the alerts stage makes.

use chrono::Duration;
use restorable_domain::native_backups::NativeBackups;

use super::layout::time;

/// The native backups as a page shows them.
pub(super) struct NativeSummary {
    /// One or two words: `OK`, `Stale`, `Disabled, Unencrypted`, or `—` (no reading yet).
    pub word: String,
    /// `healthy`, `needs-attention` or `unknown` (a CSS class).
    pub class: &'static str,
    /// The facts, one per line (instance page).
    pub facts: Vec<String>,
    /// What is wrong, one per line (instance page).
    pub findings: Vec<String>,
}

impl NativeSummary {
    /// `native` (the newest reading, if any) judged with `grace`.
    pub fn of(native: Option<&NativeBackups>, grace: Duration) -> Self {
        let Some(native) = native else {
            return NativeSummary {
                word: "—".to_owned(),
                class: "unknown",
                facts: vec![
                    "Not read yet: the next capture or native backup watch reads the PBX's own schedule."
                        .into(),
                ],
                findings: Vec::new(),
            };
        };
        let found = native.findings(grace);
        let word = if found.is_empty() {
            "OK".to_owned()
        } else {
            found
                .iter()
                .map(|f| f.kind.title().trim_start_matches("Native Backup "))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let schedule = format!(
            "Schedule: {}, {}, {}",
            if native.schedule_enabled { "on" } else { "off" },
            native.schedule.describe(),
            if native.encrypted {
                "encrypted"
            } else {
                "not encrypted"
            }
        );
        let newest = match native.last_backup_at {
            Some(at) => format!(
                "Newest native backup: {} ({} on the PBX's disk)",
                time(Some(at)),
                native.backups_on_disk
            ),
            None => "Newest native backup: none on the PBX's disk".to_owned(),
        };
        NativeSummary {
            word,
            class: if found.is_empty() {
                "healthy"
            } else {
                "needs-attention"
            },
            facts: vec![
                schedule,
                newest,
                format!(
                    "Read at {} (stale after one period plus {} h)",
                    time(Some(native.read_at)),
                    grace.num_hours()
                ),
            ],
            findings: found.into_iter().map(|f| f.detail).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use restorable_domain::cycle::examples::at;
    use restorable_domain::native_backups::examples::healthy;

    #[test]
    fn each_reading_has_its_word() {
        let grace = Duration::hours(48);
        assert_eq!(NativeSummary::of(None, grace).word, "—");
        let ok = NativeSummary::of(Some(&healthy(at())), grace);
        assert_eq!((ok.word.as_str(), ok.class), ("OK", "healthy"));
        assert!(ok.findings.is_empty());
        assert!(
            ok.facts[0].contains("on, daily, encrypted"),
            "{:?}",
            ok.facts
        );

        let mut bad = healthy(at());
        bad.schedule_enabled = false;
        bad.encrypted = false;
        let shown = NativeSummary::of(Some(&bad), grace);
        assert_eq!(shown.word, "Disabled, Unencrypted");
        assert_eq!(shown.class, "needs-attention");
        assert_eq!(shown.findings.len(), 2);

        let mut stale = healthy(at());
        stale.last_backup_at = Some(at() - Duration::days(5));
        assert_eq!(NativeSummary::of(Some(&stale), grace).word, "Stale");
        assert_eq!(
            NativeSummary::of(Some(&stale), Duration::hours(200)).word,
            "OK",
            "the configured grace decides"
        );
    }
}
