//! A fresh PostgreSQL database for one test, on the server `DECNET_TEST_DATABASE_URL` names
//! (CI sets it to the local server). Without the variable the test says it skipped its
//! PostgreSQL part; under `CI=true` a missing variable is a failure, so CI never passes
//! silently.

use std::io::Write;

use sqlx::{Connection, PgConnection};

/// A database created for one test; [`FreshPostgres::remove`] drops it.
#[derive(Debug)]
pub struct FreshPostgres {
    /// The server's URL with the fresh database's name.
    pub url: String,
    /// `user@host:port` of the server.
    pub authority: String,
    /// The database's name.
    pub name: String,
    admin: PgConnection,
}

impl FreshPostgres {
    /// Create one, or `None` (said on stderr as skipping `what`) when no server is configured.
    pub async fn create(what: &str) -> Option<FreshPostgres> {
        let Some(admin_url) = std::env::var("DECNET_TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            assert!(
                std::env::var("CI").is_err(),
                "CI must set DECNET_TEST_DATABASE_URL: {what} cannot be skipped"
            );
            // The test harness shows a passing test's stderr only on request; the skip is said
            // on the terminal as well as in the captured output.
            let _ = writeln!(
                std::io::stderr().lock(),
                "{what} skipped: DECNET_TEST_DATABASE_URL is not set"
            );
            return None;
        };
        let Some((base, _)) = admin_url.rsplit_once('/') else {
            panic!("DECNET_TEST_DATABASE_URL has no database name: {admin_url}");
        };
        let authority = base.split_once("://").map_or(base, |(_, a)| a).to_owned();
        let name = format!("decnet_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        Some(FreshPostgres {
            url: format!("{base}/{name}"),
            authority,
            name,
            admin,
        })
    }

    /// Drop the database, closing whatever still uses it.
    pub async fn remove(mut self) {
        sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .execute(&mut self.admin)
            .await
            .unwrap();
    }
}
