//! What one verification accepts: the [`VerifyLimits`] budget (entries, inflated bytes, wall
//! time) and the weakest encryption, an [`AesStrength`].

use std::time::Duration;

/// The budget of one verification, so a hostile archive cannot tie up a verify worker, and
/// the weakest encryption accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyLimits {
    /// Most entries (files and folders) an archive may hold.
    pub max_entries: u64,
    /// Most inflated bytes its entries may declare, in all.
    pub max_inflated_bytes: u64,
    /// Longest a verification may take.
    pub max_duration: Duration,
    /// The weakest AES accepted (AES-256 unless a tenant's policy allows less).
    pub minimum_encryption: AesStrength,
}

impl Default for VerifyLimits {
    /// Generous: a million entries, 1 TiB inflated, six hours, AES-256.
    fn default() -> Self {
        Self {
            max_entries: 1_000_000,
            max_inflated_bytes: 1 << 40,
            max_duration: Duration::from_secs(6 * 3600),
            minimum_encryption: AesStrength::Aes256,
        }
    }
}

/// Key strength of a WinZip AES entry, from its AE-x extra field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AesStrength {
    /// 128-bit key (strength byte 1).
    Aes128,
    /// 192-bit key (strength byte 2).
    Aes192,
    /// 256-bit key (strength byte 3).
    Aes256,
}

impl AesStrength {
    /// The stable name: `aes128`, `aes192`, `aes256`.
    pub fn as_str(self) -> &'static str {
        match self {
            AesStrength::Aes128 => "aes128",
            AesStrength::Aes192 => "aes192",
            AesStrength::Aes256 => "aes256",
        }
    }

    /// Parses a stable name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "aes128" => Some(AesStrength::Aes128),
            "aes192" => Some(AesStrength::Aes192),
            "aes256" => Some(AesStrength::Aes256),
            _ => None,
        }
    }
}
