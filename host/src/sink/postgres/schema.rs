//! The raw store's schema: sqlx migrations embedded in the binary, `clickwatch db migrate`,
//! and the start-up check that says what to run when the database is behind.

use sqlx::PgPool;
use sqlx::migrate::Migrator;

/// The migrations in `host/migrations/postgres`.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// The newest schema version this build knows.
pub fn latest_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Where the database's schema stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaState {
    /// Fully migrated.
    Current,
    /// Behind: `at` applied, `needed` required (0 = never migrated).
    Behind {
        /// Applied version.
        at: i64,
        /// Required version.
        needed: i64,
    },
    /// Ahead of this build (a newer clickwatch migrated it).
    Ahead {
        /// Applied version.
        at: i64,
        /// This build's version.
        known: i64,
    },
}

/// Reads the applied schema version.
pub async fn check(pool: &PgPool) -> Result<SchemaState, sqlx::Error> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    let at: i64 = if exists {
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await?
    } else {
        0
    };
    let needed = latest_version();
    Ok(match at.cmp(&needed) {
        std::cmp::Ordering::Less => SchemaState::Behind { at, needed },
        std::cmp::Ordering::Equal => SchemaState::Current,
        std::cmp::Ordering::Greater => SchemaState::Ahead { at, known: needed },
    })
}

/// Creates or upgrades the schema.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
