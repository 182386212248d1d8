//! The end of a grant's role: what it created is inventoried, handed to an owner with no rights
//! ([`ORPHANS`] unless the policy names `reassign_to`), disarmed, and the role is dropped.
//!
//! Disarming: every routine the role owned loses `SECURITY DEFINER` and PUBLIC's `EXECUTE`, and
//! every trigger that would call one of them is dropped, so no code a grant holder wrote runs
//! with more rights than its caller, or by itself in someone else's session. One transaction per
//! database: the inventory, `REASSIGN OWNED`, the disarming and `DROP OWNED` commit together (and
//! `DROP ROLE` with the last one), or nothing does and the revocation is retried.

use super::{Postgres, config, quote_ident, target};
use crate::{LeftObject, Result};
use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Row};
use std::time::Duration;

/// The role that owns what ended grants left behind: `NOLOGIN`, no attributes, a member of no
/// role, never the admin. Created on demand, re-checked (and repaired) at every revocation. Its
/// name has no `bg_` prefix and its comment no `breakglass:managed` tag: the sweep never drops it.
pub const ORPHANS: &str = "breakglass_orphans";
pub const ORPHANS_TAG: &str = "breakglass:orphans owns objects that ended breakglass grants left behind; NOLOGIN, no privileges, member of no role";

/// A boxed `Send` future (named, so the compiler checks `Send` here and not through the
/// connector trait's higher-ranked lifetimes).
type Boxed<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send + 'a>>;

const ROLE_OID: &str = "(SELECT oid FROM pg_roles WHERE rolname = $1)";

/// Refuses an owner for left-behind objects that has more rights than a grant could have:
/// a superuser, `CREATEROLE`, `BYPASSRLS`, `REPLICATION`, `CREATEDB`, able to log in, the admin
/// itself, or a member of such a role (or of a predefined `pg_*` role). `setting` names where
/// the role came from, for the message.
pub(super) fn check_owner<'a>(
    conn: &'a mut PgConnection,
    resource: &'a str,
    role: &'a str,
    setting: &'a str,
) -> Boxed<'a, ()> {
    Box::pin(async move {
        let row = sqlx::query(
            "SELECT r.rolsuper, r.rolcreaterole, r.rolbypassrls, r.rolreplication, r.rolcreatedb, \
                r.rolcanlogin, r.rolname = current_user OR r.rolname = session_user, \
                (SELECT string_agg(b.rolname, ', ' ORDER BY b.rolname) FROM pg_roles b \
                  WHERE b.oid <> r.oid AND pg_has_role(r.oid, b.oid, 'MEMBER') \
                    AND (b.rolsuper OR b.rolcreaterole OR b.rolbypassrls OR b.rolreplication \
                         OR b.rolname = current_user OR starts_with(b.rolname, 'pg_'))) \
         FROM pg_roles r WHERE r.rolname = $1",
        )
        .bind(role)
        .fetch_optional(&mut *conn)
        .await
        .map_err(target)?;
        let fix = format!(
            "objects a grant leaves behind would run with its rights; {setting} must name a NOLOGIN role without attributes or privileged memberships (leave reassign_to out to use {ORPHANS}, which breakglass manages)"
        );
        let Some(row) = row else {
            return Err(config(
                resource,
                format!("{setting}: role {role:?} does not exist"),
            ));
        };
        let flag = |i: usize| row.try_get::<bool, _>(i).unwrap_or(true);
        let what = [
            (0, "is a superuser"),
            (1, "has CREATEROLE"),
            (2, "has BYPASSRLS"),
            (3, "has REPLICATION"),
            (4, "has CREATEDB"),
            (5, "can log in (LOGIN)"),
            (6, "is the admin user breakglass connects as"),
        ]
        .into_iter()
        .find(|(i, _)| flag(*i))
        .map(|(_, w)| w.to_string())
        .or_else(|| {
            row.try_get::<Option<String>, _>(7)
                .ok()
                .flatten()
                .map(|m| format!("is a member of {m}"))
        });
        match what {
            Some(w) => Err(config(
                resource,
                format!("{setting}: role {role:?} {w}: {fix}"),
            )),
            None => Ok(()),
        }
    })
}

/// One statement (not prepared for reuse: DDL with names in it).
fn exec<'a>(
    conn: &'a mut PgConnection,
    sql: &'a str,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = sqlx::Result<()>> + Send + 'a>> {
    Box::pin(async move {
        sqlx::query(sql)
            .persistent(false)
            .execute(conn)
            .await
            .map(|_| ())
    })
}

async fn orphans_exist(conn: &mut PgConnection) -> Result<bool> {
    Ok(sqlx::query("SELECT 1 FROM pg_roles WHERE rolname = $1")
        .bind(ORPHANS)
        .fetch_optional(&mut *conn)
        .await
        .map_err(target)?
        .is_some())
}

/// Creates [`ORPHANS`] if missing and makes sure it is still what it must be.
fn ensure_orphans<'a>(conn: &'a mut PgConnection, resource: &'a str) -> Boxed<'a, ()> {
    Box::pin(async move {
        let q = quote_ident(ORPHANS);
        if !orphans_exist(&mut *conn).await? {
            let create = exec(
                &mut *conn,
                &format!(
                    "CREATE ROLE {q} WITH NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT CONNECTION LIMIT 0"
                ),
            )
            .await;
            if create.is_ok() {
                exec(
                    &mut *conn,
                    &format!("COMMENT ON ROLE {q} IS '{ORPHANS_TAG}'"),
                )
                .await
                .map_err(target)?;
            }
            // Another revocation may have created it a moment ago.
            if let Err(e) = create
                && !orphans_exist(&mut *conn).await?
            {
                return Err(target(format!("cannot create role {ORPHANS}: {e}")));
            }
        }
        let bad: bool = sqlx::query(
            "SELECT rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication OR rolbypassrls \
                OR rolcanlogin OR rolinherit FROM pg_roles WHERE rolname = $1",
        )
        .bind(ORPHANS)
        .fetch_one(&mut *conn)
        .await
        .map_err(target)?
        .try_get(0)
        .map_err(target)?;
        if bad {
            exec(&mut *conn, &format!(
            "ALTER ROLE {q} WITH NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT CONNECTION LIMIT 0"
        ))
        .await
        .map_err(|e| target(format!("role {ORPHANS} has attributes it must not have, and they cannot be removed: {e}")))?;
        }
        // Member of no role: each membership it was given is revoked (by its grantor, then plainly).
        let members = sqlx::query(
            "SELECT quote_ident(b.rolname), quote_ident(g.rolname) FROM pg_auth_members m \
         JOIN pg_roles b ON b.oid = m.roleid LEFT JOIN pg_roles g ON g.oid = m.grantor \
         WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = $1)",
        )
        .bind(ORPHANS)
        .fetch_all(&mut *conn)
        .await
        .map_err(target)?;
        for m in members {
            let role: String = m.try_get(0).map_err(target)?;
            let grantor: Option<String> = m.try_get(1).map_err(target)?;
            let by = grantor
                .map(|g| format!(" GRANTED BY {g}"))
                .unwrap_or_default();
            if exec(&mut *conn, &format!("REVOKE {role} FROM {q}{by}"))
                .await
                .is_err()
            {
                exec(&mut *conn, &format!("REVOKE {role} FROM {q}"))
                    .await
                    .map_err(|e| target(format!("cannot revoke {role} from {ORPHANS}: {e}")))?;
            }
        }
        let setting = format!("the role {ORPHANS}");
        check_owner(conn, resource, ORPHANS, &setting).await
    })
}

/// Inventories, reassigns and disarms what `role` owns in the database `conn` is connected to,
/// drops what is left of its privileges there, and with `drop_role` the role itself.
fn clean_database<'a>(
    conn: &'a mut PgConnection,
    role: &'a str,
    owner: &'a str,
    drop_role: bool,
) -> Boxed<'a, Vec<LeftObject>> {
    Box::pin(async move {
        let mut tx = sqlx::Connection::begin(conn).await.map_err(target)?;
        let database: String = sqlx::query("SELECT current_database()::text")
            .fetch_one(&mut *tx)
            .await
            .map_err(target)?
            .try_get(0)
            .map_err(target)?;
        // Everything it owns (pg_shdepend records each owner; indexes follow their table and are
        // listed from pg_class), schema-qualified as PostgreSQL prints identities.
        let objects = sqlx::query(&format!(
        "SELECT o.type::text, o.identity::text, coalesce(p.prosecdef, false), \
                CASE WHEN s.classid = 'pg_proc'::regclass THEN s.objid::regprocedure::text END \
         FROM pg_shdepend s \
         CROSS JOIN LATERAL pg_identify_object(s.classid, s.objid, s.objsubid) o \
         LEFT JOIN pg_proc p ON s.classid = 'pg_proc'::regclass AND p.oid = s.objid \
         WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = {ROLE_OID} AND s.deptype = 'o' \
           AND (s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                OR (s.dbid = 0 AND $2)) \
         UNION ALL \
         SELECT o.type::text, o.identity::text, false, NULL \
         FROM pg_class c CROSS JOIN LATERAL pg_identify_object('pg_class'::regclass, c.oid, 0) o \
         WHERE c.relowner = {ROLE_OID} AND c.relkind IN ('i', 'I') \
           AND c.relnamespace <> 'pg_toast'::regnamespace \
         ORDER BY 1, 2"
    ))
    .bind(role)
    .bind(drop_role)
    .fetch_all(&mut *tx)
    .await
    .map_err(target)?;
        // Triggers that would run its functions (on its own tables or anyone else's).
        let triggers = sqlx::query(&format!(
            "SELECT o.identity::text, quote_ident(t.tgname) || ' ON ' || t.tgrelid::regclass::text \
         FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid \
         CROSS JOIN LATERAL pg_identify_object('pg_trigger'::regclass, t.oid, 0) o \
         WHERE p.proowner = {ROLE_OID} AND NOT t.tgisinternal ORDER BY 1"
        ))
        .bind(role)
        .fetch_all(&mut *tx)
        .await
        .map_err(target)?;
        let q = quote_ident(role);
        let oq = quote_ident(owner);
        let mut sql = vec![format!("REASSIGN OWNED BY {q} TO {oq}")];
        let mut left = Vec::new();
        for row in &objects {
            let kind: String = row.try_get(0).map_err(target)?;
            let name: String = row.try_get(1).map_err(target)?;
            let security_definer: bool = row.try_get(2).map_err(target)?;
            let routine: Option<String> = row.try_get(3).map_err(target)?;
            let mut action = format!("owned by {owner}");
            if let Some(r) = &routine {
                if security_definer {
                    sql.push(format!("ALTER ROUTINE {r} SECURITY INVOKER"));
                    action.push_str("; SECURITY DEFINER removed");
                }
                sql.push(format!("REVOKE ALL ON ROUTINE {r} FROM PUBLIC"));
                action.push_str("; EXECUTE revoked from PUBLIC");
            }
            left.push(LeftObject {
                location: database.clone(),
                name,
                kind,
                security_definer,
                neutralised: routine.is_some(),
                action,
            });
        }
        for row in &triggers {
            let name: String = row.try_get(0).map_err(target)?;
            let on: String = row.try_get(1).map_err(target)?;
            sql.push(format!("DROP TRIGGER {on}"));
            left.push(LeftObject {
                location: database.clone(),
                name,
                kind: "trigger".into(),
                security_definer: false,
                neutralised: true,
                action: "dropped: it would run code the grant left behind".into(),
            });
        }
        sql.push(format!("DROP OWNED BY {q}"));
        if drop_role {
            sql.push(format!("DROP ROLE {q}"));
        }
        for stmt in &sql {
            exec(&mut tx, stmt).await.map_err(|e| {
                target(format!(
                    "cleaning up after {role} in database {database}: {e}"
                ))
            })?;
        }
        tx.commit().await.map_err(target)?;
        Ok(left)
    })
}

impl Postgres {
    async fn backends(conn: &PgPool, role: &str) -> Result<i64> {
        sqlx::query("SELECT count(*) FROM pg_stat_activity WHERE usename = $1")
            .bind(role)
            .fetch_one(conn)
            .await
            .map_err(target)?
            .try_get::<i64, _>(0)
            .map_err(target)
    }

    async fn exists(conn: &PgPool, role: &str) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM pg_roles WHERE rolname = $1")
            .bind(role)
            .fetch_optional(conn)
            .await
            .map_err(target)?
            .is_some())
    }

    /// Whether `role` is gone and none of its backends runs.
    pub(super) async fn gone(conn: &PgPool, role: &str) -> Result<bool> {
        Ok(!Self::exists(conn, role).await? && Self::backends(conn, role).await? == 0)
    }

    /// Checks the owner of left-behind objects (`reassign_to`, or creates and checks
    /// [`ORPHANS`]); returns its name.
    pub(super) async fn owner_for_leftovers(&self, conn: &PgPool) -> Result<String> {
        let mut c = conn.acquire().await.map_err(target)?;
        match &self.reassign_to {
            Some(r) => {
                check_owner(&mut c, &self.resource, r, "reassign_to").await?;
                Ok(r.clone())
            }
            None => {
                ensure_orphans(&mut c, &self.resource).await?;
                Ok(ORPHANS.into())
            }
        }
    }

    /// Blocks login, kills the role's sessions, hands its objects over disarmed and drops it;
    /// returns what it left behind, in every database it owned something in.
    pub(super) async fn drop_role(&self, role: &str) -> Result<Vec<LeftObject>> {
        let conn = self.connect(None).await?;
        let res = self.drop_role_on(&conn, role).await;
        let gone = match res {
            Ok(_) => Self::gone(&conn, role).await,
            Err(_) => Ok(false),
        };
        conn.close().await;
        let left = res?;
        if gone? {
            Ok(left)
        } else {
            Err(target(format!("role {role} still exists after DROP ROLE")))
        }
    }

    async fn drop_role_on(&self, conn: &PgPool, role: &str) -> Result<Vec<LeftObject>> {
        let q = quote_ident(role);
        if !Self::exists(conn, role).await? {
            return Ok(Vec::new());
        }
        sqlx::raw_sql(&format!("ALTER ROLE {q} NOLOGIN"))
            .execute(conn)
            .await
            .map_err(target)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()")
                .bind(role)
                .execute(conn)
                .await
                .map_err(target)?;
            if Self::backends(conn, role).await? == 0 {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(target(format!(
                    "sessions of {role} are still running after pg_terminate_backend"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let owner = self.owner_for_leftovers(conn).await?;
        // Every other database the role owns or holds something in, and the configured one.
        let rows = sqlx::query(&format!(
            "SELECT DISTINCT d.datname::text FROM pg_shdepend s JOIN pg_database d ON d.oid = s.dbid \
             WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = {ROLE_OID} \
               AND d.datname <> current_database() ORDER BY 1"
        ))
        .bind(role)
        .fetch_all(conn)
        .await
        .map_err(target)?;
        let mut others = Vec::new();
        for r in &rows {
            others.push(r.try_get::<String, _>(0).map_err(target)?);
        }
        let here: String = sqlx::query("SELECT current_database()::text")
            .fetch_one(conn)
            .await
            .map_err(target)?
            .try_get(0)
            .map_err(target)?;
        if let Some(db) = self.database.as_deref()
            && db != here
            && !others.iter().any(|o| o == db)
        {
            others.push(db.to_string());
        }
        let mut left = Vec::new();
        for db in &others {
            let pool = self.connect(Some(db)).await?;
            let mut c = pool.acquire().await.map_err(target)?;
            let res = clean_database(&mut c, role, &owner, false).await;
            drop(c);
            pool.close().await;
            left.extend(res?);
        }
        let mut c = conn.acquire().await.map_err(target)?;
        left.extend(clean_database(&mut c, role, &owner, true).await?);
        Ok(left)
    }
}
