//! The tamper-evident history's arithmetic, shared by the store (which chains every event as it
//! commits), the live check and the offline verifier: no I/O.
//!
//! # The chain (one per tenant)
//! Every event belongs to one tenant and has a place `index` (1, 2, ...) in that tenant's chain.
//! Its **line** is the canonical JSON ([`canonical_json`]) of
//! `{"aggregate_id", "aggregate_type", "event_type", "event_version", "index", "metadata",
//! "payload", "sequence", "tenant"}`; its **link** is
//! `h_n = SHA-256(hex(h_{n-1}) ‖ line_n)` in lowercase hex, with `h_0` sixty-four `0`s — the
//! previous link is hashed as its 64 ASCII hex digits, so `printf '%s%s' "$prev" "$line" |
//! sha256sum` computes it.
//!
//! # Canonical JSON
//! RFC 8785 for every value Restorable writes: no whitespace, object keys sorted (by code point;
//! Restorable's keys are ASCII, where this is RFC 8785's UTF-16 order), strings escaped as
//! JSON.stringify does (serde_json's escaping), integers in decimal. Restorable's events carry
//! no fractions; an integer beyond 2^53 is written exactly (RFC 8785 would round it).
//!
//! # The tenants' Merkle tree (RFC 6962 / 9162)
//! A checkpoint commits to every tenant's head at once: the leaves are the canonical JSON of
//! `{"head", "index", "tenant"}` sorted by tenant; a leaf hashes as `SHA-256(0x00 ‖ leaf)`, a
//! node as `SHA-256(0x01 ‖ left ‖ right)`, split at the largest power of two below the count.
//! An inclusion proof shows one tenant's head is in the signed root and reveals only hashes of
//! the others.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The link before a chain's first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `value` as canonical JSON (see the module's header).
pub fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    into_text(out)
}

/// Appends `value`'s canonical JSON to `out`, whatever order its maps keep (serde_json's
/// `preserve_order` may be on in one build and off in another).
pub(crate) fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<(&String, &serde_json::Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (n, (key, item)) in entries.into_iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write_scalar(key.as_str(), out);
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
        serde_json::Value::Array(items) => {
            out.push(b'[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        other => write_scalar(other, out),
    }
}

/// Appends the JSON of a string, number, boolean or null (serde_json's escaping and digits).
fn write_scalar<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Serializing a string, a number, a boolean or null into memory cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// The bytes written by [`write_canonical`] as text (serde_json writes UTF-8 only).
pub(crate) fn into_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// An event's parts, borrowed: its line without copying its payload ([`ChainedEvent::line`]
/// is the same line of an owned event).
#[derive(Clone, Copy, Debug)]
pub struct EventLine<'a> {
    /// The tenant whose chain holds it.
    pub tenant: &'a str,
    /// Its place in the tenant's chain, from 1.
    pub index: i64,
    /// `Instance`, `BackupCycle`, ...
    pub aggregate_type: &'a str,
    /// The aggregate's id.
    pub aggregate_id: &'a str,
    /// Its sequence in the aggregate.
    pub sequence: i64,
    /// e.g. `Captured`.
    pub event_type: &'a str,
    /// e.g. `1.0`.
    pub event_version: &'a str,
    /// The event as stored.
    pub payload: &'a serde_json::Value,
    /// Its metadata as stored.
    pub metadata: &'a serde_json::Value,
}

impl EventLine<'_> {
    /// The canonical line that is hashed (and exported): the canonical JSON of the nine keys,
    /// written in their sorted order (the order of `parts`).
    pub fn line(&self) -> String {
        /// A value of the line: text and integers as JSON scalars, payload and metadata as
        /// canonical JSON.
        enum Part<'p> {
            Text(&'p str),
            Integer(i64),
            Json(&'p serde_json::Value),
        }
        let parts = [
            ("aggregate_id", Part::Text(self.aggregate_id)),
            ("aggregate_type", Part::Text(self.aggregate_type)),
            ("event_type", Part::Text(self.event_type)),
            ("event_version", Part::Text(self.event_version)),
            ("index", Part::Integer(self.index)),
            ("metadata", Part::Json(self.metadata)),
            ("payload", Part::Json(self.payload)),
            ("sequence", Part::Integer(self.sequence)),
            ("tenant", Part::Text(self.tenant)),
        ];
        let mut out = Vec::with_capacity(256);
        out.push(b'{');
        for (n, (key, part)) in parts.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            write_scalar(*key, &mut out);
            out.push(b':');
            match part {
                Part::Text(text) => write_scalar(*text, &mut out),
                Part::Integer(number) => write_scalar(number, &mut out),
                Part::Json(value) => write_canonical(value, &mut out),
            }
        }
        out.push(b'}');
        into_text(out)
    }
}

/// One event as the chain sees it (and as an export writes it, one per line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChainedEvent {
    /// The tenant whose chain holds it.
    pub tenant: String,
    /// Its place in the tenant's chain, from 1.
    pub index: i64,
    /// `Instance`, `BackupCycle`, ...
    pub aggregate_type: String,
    /// The aggregate's id.
    pub aggregate_id: String,
    /// Its sequence in the aggregate.
    pub sequence: i64,
    /// e.g. `Captured`.
    pub event_type: String,
    /// e.g. `1.0`.
    pub event_version: String,
    /// The event as stored.
    pub payload: serde_json::Value,
    /// Its metadata as stored.
    pub metadata: serde_json::Value,
}

impl ChainedEvent {
    /// The canonical line that is hashed (and exported).
    pub fn line(&self) -> String {
        EventLine {
            tenant: &self.tenant,
            index: self.index,
            aggregate_type: &self.aggregate_type,
            aggregate_id: &self.aggregate_id,
            sequence: self.sequence,
            event_type: &self.event_type,
            event_version: &self.event_version,
            payload: &self.payload,
            metadata: &self.metadata,
        }
        .line()
    }
}

/// `h_n` from `h_{n-1}` (64 hex digits) and `line_n`.
pub fn link(previous: &str, line: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(previous.as_bytes());
    hasher.update(line.as_bytes());
    hex_of(&hasher.finalize())
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex_of(&Sha256::digest(bytes))
}

fn hex_of(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The tenant named by an event's payload (`{"<Variant>": {"tenant_id": ...}}`), if any.
pub fn tenant_named_by(payload: &serde_json::Value) -> Option<&str> {
    payload
        .as_object()?
        .values()
        .next()?
        .get("tenant_id")?
        .as_str()
}

/// One tenant's head in a checkpoint: a leaf of the Merkle tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantHead {
    /// The tenant.
    pub tenant: String,
    /// The index of its last chained event.
    pub index: i64,
    /// That event's link.
    pub head: String,
}

impl TenantHead {
    /// The leaf's bytes: its canonical JSON.
    pub fn leaf(&self) -> String {
        canonical_json(&serde_json::json!({
            "head": self.head,
            "index": self.index,
            "tenant": self.tenant,
        }))
    }
}

type Hash = [u8; 32];

fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    h.finalize().into()
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two below `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn tree_hash(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&tree_hash(&leaves[..k]), &tree_hash(&leaves[k..]))
        }
    }
}

fn leaf_hashes(heads: &[TenantHead]) -> Vec<Hash> {
    heads
        .iter()
        .map(|h| leaf_hash(h.leaf().as_bytes()))
        .collect()
}

/// The Merkle root (hex) over `heads`, which must be sorted by tenant.
pub fn merkle_root(heads: &[TenantHead]) -> String {
    hex_of(&tree_hash(&leaf_hashes(heads)))
}

/// The inclusion proof (RFC 9162 audit path, hex, leaf side first) of `heads[index]`.
pub fn inclusion_proof(heads: &[TenantHead], index: usize) -> Vec<String> {
    fn path(leaves: &[Hash], m: usize, out: &mut Vec<Hash>) {
        if leaves.len() <= 1 {
            return;
        }
        let k = split(leaves.len());
        if m < k {
            path(&leaves[..k], m, out);
            out.push(tree_hash(&leaves[k..]));
        } else {
            path(&leaves[k..], m - k, out);
            out.push(tree_hash(&leaves[..k]));
        }
    }
    let mut out = Vec::new();
    let leaves = leaf_hashes(heads);
    if index < leaves.len() {
        path(&leaves, index, &mut out);
    }
    out.iter().map(|h| hex_of(h)).collect()
}

/// Whether `leaf`, at `index` of a tree of `size` leaves, is in the tree with `root`, by the
/// audit path `proof` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &TenantHead,
    index: usize,
    size: usize,
    proof: &[String],
    root: &str,
) -> bool {
    if index >= size {
        return false;
    }
    let mut decoded = Vec::with_capacity(proof.len());
    for p in proof {
        match parse_hash(p) {
            Some(h) => decoded.push(h),
            None => return false,
        }
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = leaf_hash(leaf.leaf().as_bytes());
    for p in &decoded {
        if s_n == 0 {
            return false;
        }
        if f_n % 2 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n % 2 == 0 {
                while f_n % 2 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && hex_of(&r) == root
}

fn parse_hash(text: &str) -> Option<Hash> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (n, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * n..2 * n + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads(n: usize) -> Vec<TenantHead> {
        (0..n)
            .map(|i| TenantHead {
                tenant: format!("t{i:03}"),
                index: i as i64 + 1,
                head: link(GENESIS, &format!("{i}")),
            })
            .collect()
    }

    #[test]
    fn every_leaf_of_trees_of_1_to_33_leaves_is_proven_and_no_other_leaf_is() {
        for size in 1..=33 {
            let tree = heads(size);
            let root = merkle_root(&tree);
            for (i, leaf) in tree.iter().enumerate() {
                let proof = inclusion_proof(&tree, i);
                assert!(verify_inclusion(leaf, i, size, &proof, &root), "{size} {i}");
                let mut other = leaf.clone();
                other.index += 1;
                assert!(!verify_inclusion(&other, i, size, &proof, &root));
                if size > 1 {
                    assert!(!verify_inclusion(leaf, (i + 1) % size, size, &proof, &root));
                }
            }
        }
    }

    #[test]
    fn the_root_of_one_leaf_is_its_leaf_hash_and_of_two_their_node() {
        let tree = heads(2);
        let a = leaf_hash(tree[0].leaf().as_bytes());
        let b = leaf_hash(tree[1].leaf().as_bytes());
        assert_eq!(merkle_root(&tree[..1]), hex_of(&a));
        assert_eq!(merkle_root(&tree), hex_of(&node_hash(&a, &b)));
    }

    #[test]
    fn a_line_is_the_canonical_json_of_its_nine_keys() {
        let event = ChainedEvent {
            tenant: "acme".into(),
            index: 42,
            aggregate_type: "BackupCycle".into(),
            aggregate_id: "c-\"1\"".into(),
            sequence: 9_007_199_254_740_993,
            event_type: "Captured".into(),
            event_version: "1.0".into(),
            payload: serde_json::json!({"Captured": {"z": [1, {"b": "\u{1}é\n", "a": null}], "a": true}}),
            metadata: serde_json::json!({"k": -3, "\u{7f}": "x"}),
        };
        let whole = serde_json::json!({
            "aggregate_id": event.aggregate_id,
            "aggregate_type": event.aggregate_type,
            "event_type": event.event_type,
            "event_version": event.event_version,
            "index": event.index,
            "metadata": event.metadata,
            "payload": event.payload,
            "sequence": event.sequence,
            "tenant": event.tenant,
        });
        assert_eq!(event.line(), canonical_json(&whole));
        assert!(event
            .line()
            .starts_with("{\"aggregate_id\":\"c-\\\"1\\\"\",\"aggregate_type\""));
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth_and_escapes_as_rfc_8785() {
        let value = serde_json::json!({"b": [ {"z": 1, "a": "\u{1}\n\"é"} ], "a": null});
        assert_eq!(
            canonical_json(&value),
            "{\"a\":null,\"b\":[{\"a\":\"\\u0001\\n\\\"é\",\"z\":1}]}"
        );
    }

    #[test]
    fn a_link_is_the_sha256_of_the_previous_hex_then_the_line() {
        // printf '%s%s' 000...000 '{"a":1}' | sha256sum
        let expected = sha256_hex(format!("{GENESIS}{{\"a\":1}}").as_bytes());
        assert_eq!(link(GENESIS, "{\"a\":1}"), expected);
        assert_eq!(expected.len(), 64);
    }

    #[test]
    fn the_tenant_of_an_event_is_its_payloads_tenant_id() {
        let payload = serde_json::json!({"InstanceEnrolled": {"tenant_id": "acme", "name": "x"}});
        assert_eq!(tenant_named_by(&payload), Some("acme"));
        assert_eq!(tenant_named_by(&serde_json::json!({"Secured": {}})), None);
        assert_eq!(tenant_named_by(&serde_json::json!("text")), None);
    }
}
