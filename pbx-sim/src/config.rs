//! Configuration of one simulated PBX: its name, seed, size, backup padding, fault and API
//! credentials.

use std::fmt;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::Fault;

/// Everything that defines one simulated PBX.
#[derive(Clone)]
pub struct SimPbxConfig {
    /// PBX name, e.g. `"acme-hq"`: names its work subdirectory and its FQDN
    /// (`<name>.pbx.example`). Letters, digits, `-`, `_` and `.` only.
    pub name: String,
    /// Seeds the PBX database deterministically.
    pub seed: u64,
    /// Number of extensions (at least 1 is used); queues, ring groups and IVRs scale at about
    /// one per ten extensions, at least one each.
    pub extensions: u32,
    /// Extra bytes of recordings in each backup (0 = a backup of a few KiB).
    pub padding_bytes: u64,
    /// The fault this PBX commits, if any.
    pub fault: Option<Fault>,
    /// API client id accepted by `POST /connect/token`.
    pub client_id: String,
    /// API client secret accepted by `POST /connect/token` (never printed by `Debug`).
    pub client_secret: String,
    /// How long making a backup takes before the file is written and listed.
    pub backup_delay: Duration,
    /// Where the hostile faults point (`off-origin-link`, `redirect-loopback`): a URL on
    /// another origin, e.g. a loopback service the client must never touch. Default
    /// `http://127.0.0.1:9/internal` (the discard port).
    pub hostile_target: String,
}

impl SimPbxConfig {
    /// Defaults: 12 extensions, no padding, no fault, a 50 ms backup delay, client id
    /// `<name>-client` and a 32-character secret derived from the seed.
    pub fn new(name: &str, seed: u64) -> Self {
        // A different stream than the database's, so the secret says nothing about the data.
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5ec2_e7c1_1e47_5eed);
        let client_secret = (0..32)
            .map(|_| char::from_digit(rng.gen_range(0..36), 36).unwrap_or('x'))
            .collect();
        SimPbxConfig {
            name: name.to_owned(),
            seed,
            extensions: 12,
            padding_bytes: 0,
            fault: None,
            client_id: format!("{name}-client"),
            client_secret,
            backup_delay: Duration::from_millis(50),
            hostile_target: "http://127.0.0.1:9/internal".to_owned(),
        }
    }
}

impl fmt::Debug for SimPbxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimPbxConfig")
            .field("name", &self.name)
            .field("seed", &self.seed)
            .field("extensions", &self.extensions)
            .field("padding_bytes", &self.padding_bytes)
            .field("fault", &self.fault)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("backup_delay", &self.backup_delay)
            .field("hostile_target", &self.hostile_target)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_secret_derivation() {
        let a = SimPbxConfig::new("acme-hq", 9);
        assert_eq!(a.client_id, "acme-hq-client");
        assert_eq!(a.extensions, 12);
        assert_eq!(a.client_secret.len(), 32);
        assert_eq!(a.client_secret, SimPbxConfig::new("other", 9).client_secret);
        assert_ne!(
            a.client_secret,
            SimPbxConfig::new("acme-hq", 10).client_secret
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let a = SimPbxConfig::new("acme-hq", 9);
        let shown = format!("{a:?}");
        assert!(!shown.contains(&a.client_secret));
        assert!(shown.contains("acme-hq-client"));
    }
}
