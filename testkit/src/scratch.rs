//! Throwaway PostgreSQL databases for tests and benchmarks: each [`ScratchDatabase`] is a new,
//! uniquely named database on a server (the machine's, or one the test script started), dropped
//! again when the value is dropped, so parallel tests never see each other's events.

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};

/// The server the tests use: `RESTORABLE_TEST_DATABASE_URL`, else the local PostgreSQL as
/// `postgres` on 127.0.0.1:5432.
pub fn test_server_url() -> String {
    std::env::var("RESTORABLE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database that exists for as long as this value does.
pub struct ScratchDatabase {
    server: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// Creates `restorable_scratch_<random>` on the server at `server_url` (any database URL of
    /// that server; the database part is replaced).
    ///
    /// # Errors
    /// The driver's error, e.g. when no server answers.
    pub async fn create(server_url: &str) -> Result<Self, sqlx::Error> {
        let name = format!("restorable_scratch_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(server_url).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        let url = with_database(server_url, &name);
        // Fail here, not in the test, if the new database cannot be reached.
        PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await?
            .close()
            .await;
        Ok(Self {
            server: server_url.to_owned(),
            name,
            url,
        })
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// `url` with its database path replaced by `database` (query parameters kept).
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|i| start + i))
        .unwrap_or(base.len());
    format!("{}/{database}{query}", &base[..authority_end])
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop runs outside (or inside) a runtime; a thread of its own can always block.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&server)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(())
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop scratch database {}: {error}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_part_of_a_url_is_replaced() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}
