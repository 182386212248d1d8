//! Migrations, shared by both backends: each backend embeds its own dialect's files and applies
//! the ones a database lacks inside one transaction the dialect opens (SQLite: `BEGIN
//! IMMEDIATE`; PostgreSQL: plus a transaction-scoped advisory lock, so nodes starting together
//! migrate once). A database that has a migration this binary does not know (it was made by a
//! newer breakglass) is refused: running old code on it could misread or corrupt it.

use super::db::Pool;
use crate::{Result, StoreError};

/// Applies the pending migrations of `migrations` (version, SQL), in order.
pub(super) async fn migrate(pool: &Pool, migrations: &'static [(i64, &'static str)]) -> Result<()> {
    let mut tx = super::dialect::begin_migration(pool).await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)")
        .execute(&mut *tx)
        .await?;
    let done: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(&mut *tx)
        .await?;
    let known = migrations.iter().map(|(v, _)| *v).max().unwrap_or(0);
    if let Some(newer) = done.iter().copied().filter(|v| *v > known).max() {
        return Err(StoreError::SchemaTooNew {
            found: newer,
            known,
        });
    }
    for (version, sql) in migrations {
        if done.contains(version) {
            continue;
        }
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
