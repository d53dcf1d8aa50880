//! PostgreSQL for the suites: a fresh database migrated by the host's own migrations, and
//! the event ids its raw store holds.

use crate::services::postgres_server;

/// Creates database `name` on the test server, migrates it, and returns its URL.
pub async fn fresh_database(name: &str) -> String {
    let admin = sqlx::PgPool::connect(&postgres_server())
        .await
        .expect("connect to the PostgreSQL server");
    for statement in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(&statement)
            .execute(&admin)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    admin.close().await;
    let server = postgres_server();
    let (base, _) = server
        .rsplit_once('/')
        .expect("a server URL ending in /<database>");
    let url = format!("{base}/{name}");
    let pool = clickwatch::sink::postgres::pool(&clickwatch::sink::postgres::PgSettings {
        url: url.clone(),
        password: None,
        startup_timeout: std::time::Duration::from_secs(10),
    })
    .expect("pool");
    clickwatch::sink::postgres::migrate(&pool)
        .await
        .expect("migrate");
    pool.close().await;
    url
}

/// How many rows the raw store holds, or `None` while the server is unreachable (during an
/// outage the suite itself causes).
pub async fn raw_count(url: &str) -> Option<i64> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(2))
        .connect(url)
        .await
        .ok()?;
    let n = sqlx::query_scalar("SELECT COUNT(*) FROM click_events")
        .fetch_one(&pool)
        .await
        .ok();
    pool.close().await;
    n
}

/// Every event id in the raw store, with how many rows carry it.
pub async fn raw_ids(url: &str) -> std::collections::BTreeMap<String, i64> {
    let pool = sqlx::PgPool::connect(url).await.expect("connect");
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT event_id, COUNT(*) FROM click_events GROUP BY event_id")
            .fetch_all(&pool)
            .await
            .expect("read the raw store");
    pool.close().await;
    rows.into_iter().collect()
}
