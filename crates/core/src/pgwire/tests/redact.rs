//! Redaction: passwords in every quoting style, in nested code, verifiers and connection strings;
//! what must stay visible; the documented blind spots.

use crate::pgwire::redact::{redact_sql, redact_value};

fn r(sql: &str) -> String {
    redact_sql(sql, true).text
}

#[test]
fn password_literals_in_role_statements() {
    for (sql, want) in [
        (
            "CREATE ROLE x PASSWORD 'secret'",
            "CREATE ROLE x PASSWORD '***'",
        ),
        (
            "create\n  user\tbob\n  with login encrypted password\n'se''cret' valid until 'infinity'",
            "create\n  user\tbob\n  with login encrypted password\n'***' valid until 'infinity'",
        ),
        (
            "ALTER USER bob PASSWORD E'se\\'cr\\\\et' CONNECTION LIMIT 1",
            "ALTER USER bob PASSWORD '***' CONNECTION LIMIT 1",
        ),
        (
            "ALTER ROLE bob PASSWORD e'x'",
            "ALTER ROLE bob PASSWORD '***'",
        ),
        (
            "ALTER ROLE bob PASSWORD $$sec'ret$$",
            "ALTER ROLE bob PASSWORD '***'",
        ),
        (
            "ALTER ROLE bob PASSWORD $pw$sec$$ret$pw$ LOGIN",
            "ALTER ROLE bob PASSWORD '***' LOGIN",
        ),
        (
            "ALTER ROLE bob PASSWORD U&'d\\0061t'",
            "ALTER ROLE bob PASSWORD '***'",
        ),
        (
            "ALTER ROLE bob PASSWORD N'nat'",
            "ALTER ROLE bob PASSWORD '***'",
        ),
        (
            "CREATE GROUP ops WITH PASSWORD 'g'",
            "CREATE GROUP ops WITH PASSWORD '***'",
        ),
        (
            "ALTER ROLE x PASSWORD 'abc'\n  'def' LOGIN",
            "ALTER ROLE x PASSWORD '***' LOGIN",
        ),
        (
            "ALTER ROLE x /* PASSWORD in a comment */ PASSWORD -- here it comes\n 'secret';",
            "ALTER ROLE x /* PASSWORD in a comment */ PASSWORD -- here it comes\n '***';",
        ),
        (
            "ALTER ROLE \"password\" PASSWORD 'x'",
            "ALTER ROLE \"password\" PASSWORD '***'",
        ),
        (
            "ALTER ROLE password PASSWORD 'x'",
            "ALTER ROLE password PASSWORD '***'",
        ),
        (
            "ALTER ROLE \"ünï\" PASSWORD 'pässwörd' -- ✓",
            "ALTER ROLE \"ünï\" PASSWORD '***' -- ✓",
        ),
        (
            "BEGIN; CREATE USER a PASSWORD 'one'; ALTER USER b PASSWORD 'two'; COMMIT",
            "BEGIN; CREATE USER a PASSWORD '***'; ALTER USER b PASSWORD '***'; COMMIT",
        ),
        (
            "CREATE USER MAPPING FOR bob SERVER s OPTIONS (user 'bob', password 'fdw')",
            "CREATE USER MAPPING FOR bob SERVER s OPTIONS (user 'bob', password '***')",
        ),
        (
            "ALTER ROLE x PASSWORD 'unterminated",
            "ALTER ROLE x PASSWORD '***'",
        ),
    ] {
        let red = redact_sql(sql, true);
        assert_eq!(red.text, want, "{sql}");
        assert!(red.redacted, "{sql}");
    }
}

#[test]
fn psql_password_verifiers_and_md5_hashes() {
    let scram = "SCRAM-SHA-256$4096:c2FsdHNhbHQ=$U3RvcmVkS2V5:U2VydmVyS2V5";
    let md5 = "md5d41d8cd98f00b204e9800998ecf8427e";
    // What psql's \password sends.
    assert_eq!(
        r(&format!("ALTER USER \"bob\" PASSWORD '{scram}'")),
        "ALTER USER \"bob\" PASSWORD '***'"
    );
    assert_eq!(
        r(&format!("ALTER USER bob PASSWORD '{md5}'")),
        "ALTER USER bob PASSWORD '***'"
    );
    // Anywhere else too: a verifier logs in as the role.
    assert_eq!(
        r(&format!(
            "UPDATE pg_authid SET rolpassword = '{md5}' WHERE rolname = 'bob'"
        )),
        "UPDATE pg_authid SET rolpassword = '***' WHERE rolname = 'bob'"
    );
    assert_eq!(r(&format!("SELECT $v${scram}$v$")), "SELECT '***'");
    assert_eq!(redact_value(scram).as_deref(), Some("***"));
    assert_eq!(redact_value(md5).as_deref(), Some("***"));
    assert_eq!(redact_value("md5 is a hash function"), None);
    assert_eq!(redact_value("md5d41d8cd98f00b204e9800998ecf8427"), None);
}

#[test]
fn nested_code_and_dynamic_literals() {
    assert_eq!(
        r("DO $$ BEGIN ALTER ROLE x PASSWORD 'p'; END $$"),
        "DO $$ BEGIN ALTER ROLE x PASSWORD '***'; END $$"
    );
    assert_eq!(
        r("DO $do$ BEGIN EXECUTE 'ALTER ROLE x PASSWORD ''p'''; END $do$;"),
        "DO $do$ BEGIN EXECUTE 'ALTER ROLE x PASSWORD ''***'''; END $do$;"
    );
    assert_eq!(
        r("SELECT 'ALTER ROLE x PASSWORD ''p''' \\gexec"),
        "SELECT 'ALTER ROLE x PASSWORD ''***''' \\gexec"
    );
    assert_eq!(
        r(
            "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $fn$ BEGIN ALTER ROLE x PASSWORD \
           $q$p$q$; END $fn$"
        ),
        "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $fn$ BEGIN ALTER ROLE x PASSWORD \
         '***'; END $fn$"
    );
}

#[test]
fn connection_strings_in_literals_and_values() {
    assert_eq!(
        r("SELECT dblink_connect('host=db user=u password=hunter2 dbname=x')"),
        "SELECT dblink_connect('host=db user=u password=*** dbname=x')"
    );
    assert_eq!(
        r("SELECT dblink_connect('host=db password = ''a b\\'' c'' sslpassword=k')"),
        "SELECT dblink_connect('host=db password = *** sslpassword=***')"
    );
    assert_eq!(
        r("SELECT dblink('postgresql://u:hunter2@db:5432/x?sslmode=require', 'SELECT 1')"),
        "SELECT dblink('postgresql://u:***@db:5432/x?sslmode=require', 'SELECT 1')"
    );
    assert_eq!(
        redact_value("postgres://u@db/x?password=pw&sslmode=require").as_deref(),
        Some("postgres://u@db/x?password=***&sslmode=require")
    );
    assert_eq!(redact_value("host=db user=u").as_deref(), None);
    assert_eq!(redact_value("https://example.com/a:b").as_deref(), None);
}

#[test]
fn what_stays_visible() {
    for sql in [
        "SELECT 1",
        "SELECT password FROM users WHERE name = 'x'",
        "ALTER ROLE x PASSWORD NULL",
        "ALTER ROLE x VALID UNTIL '2030-01-01'",
        "SELECT md5('abc')",
        "SELECT '/* not a comment */ -- nor this'",
        "COMMENT ON ROLE x IS 'rotates its password monthly'",
    ] {
        let red = redact_sql(sql, true);
        assert_eq!(red.text, sql);
        assert!(!red.redacted, "{sql}");
        assert!(red.secret_params.is_empty());
    }
}

#[test]
fn bound_password_parameters_are_reported() {
    let red = redact_sql("ALTER ROLE x PASSWORD $2 VALID UNTIL $1", true);
    assert_eq!(red.secret_params, vec![1]);
    assert!(!red.redacted, "the text itself holds no secret");
    let red = redact_sql("CREATE ROLE a PASSWORD $1; CREATE ROLE b PASSWORD $1", true);
    assert_eq!(red.secret_params, vec![0]);
    // Inside a function body, $1 is the function's argument, not a bound parameter.
    let red = redact_sql("DO $$ BEGIN EXECUTE 'x'; END $$ -- PASSWORD $3", true);
    assert!(red.secret_params.is_empty());
}

#[test]
fn standard_conforming_strings_decides_where_a_literal_ends() {
    let sql = "ALTER ROLE x PASSWORD 'a\\'b; DROP TABLE t; --'";
    // On (the default): the literal is 'a\', the DROP runs and must stay visible.
    assert_eq!(
        redact_sql(sql, true).text,
        "ALTER ROLE x PASSWORD '***'b; DROP TABLE t; --'"
    );
    // Off: the backslash escapes the quote, the whole rest is the password.
    assert_eq!(redact_sql(sql, false).text, "ALTER ROLE x PASSWORD '***'");
}

#[test]
fn documented_blind_spots() {
    // Assembled at run time: not seen.
    for sql in [
        "SELECT format('ALTER ROLE x PASSWORD %L', 'p') \\gexec",
        "DO $$ BEGIN EXECUTE 'ALTER ROLE x PASS' || 'WORD ''p'''; END $$",
        "SELECT E'ALTER ROLE x PASSWORD \\'p\\''",
    ] {
        assert!(r(sql).contains('p'), "{sql}");
        assert!(!redact_sql(sql, true).redacted, "{sql}");
    }
}

/// Quotes `p` in one of the styles PostgreSQL accepts.
fn quote(p: &str, style: u8) -> String {
    match style % 4 {
        0 => format!("'{}'", p.replace('\'', "''")),
        1 => format!("E'{}'", p.replace('\\', "\\\\").replace('\'', "\\'")),
        2 => format!("$pw$${p}$pw$").replacen("$pw$$", "$pw$", 1),
        _ => {
            let mut out = String::new();
            for (i, part) in p.split('\n').enumerate() {
                if i > 0 {
                    out.push_str("\n  ");
                }
                out.push_str(&format!("'{}'", part.replace('\'', "''")));
            }
            out
        }
    }
}

proptest::proptest! {
    #[test]
    fn any_password_any_quoting_is_masked(
        p in "[a-zA-Z0-9 '\"\\\\$;\n/*-]{0,40}",
        style in 0u8..4,
        upper in proptest::bool::ANY,
    ) {
        proptest::prop_assume!(!p.contains("$pw$") && !p.ends_with('$'));
        let kw = if upper { "ALTER ROLE r PASSWORD" } else { "alter role r\n password" };
        let sql = format!("{kw} {}", quote(&p, style));
        let red = redact_sql(&sql, true);
        proptest::prop_assert_eq!(red.text, format!("{kw} '***'"), "{}", sql);
        // The same inside a DO block.
        let block = format!("DO $blk$ BEGIN {sql}; END $blk$");
        proptest::prop_assume!(!p.contains("$blk$"));
        let red = redact_sql(&block, true);
        proptest::prop_assert_eq!(red.text, format!("DO $blk$ BEGIN {kw} '***'; END $blk$"));
    }

    #[test]
    fn any_text_never_panics(s in "\\PC{0,200}", scs in proptest::bool::ANY) {
        let red = redact_sql(&s, scs);
        if !red.redacted {
            proptest::prop_assert_eq!(red.text, s.clone());
        }
        let _ = redact_value(&s);
    }

    #[test]
    fn sql_ish_text_never_panics(s in "(PASSWORD|password|'|''|E'|\\$\\$|\\$a\\$|\\$1|--|/\\*|\\*/|\n| |x|\\\\|md5|SCRAM-SHA-256\\$|://|@|:|=|ü)*") {
        let _ = redact_sql(&s, true);
        let _ = redact_sql(&s, false);
        let _ = redact_value(&s);
    }
}
