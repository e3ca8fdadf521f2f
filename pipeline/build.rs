//! Rebuilds the pipeline when a migration file is added or changed: `sqlx::migrate!` embeds
//! `migrations/{sqlite,postgres}/*.sql` at compile time.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
