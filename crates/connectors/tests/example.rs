//! The resource block of the connectors' issue loads as written, through the policy parser and
//! every connector's settings check (no target is contacted).

const EXAMPLE: &str = r#"
resources:
  - name: bastion
    kind: ssh
    principals: [root]
  - name: prod-db
    kind: postgres
    admin_url_env: BREAKGLASS_PG_ADMIN_URL     # or admin_url_file: /etc/breakglass/pg-admin-url
    grant_roles: [app_admin]
    connection_limit: 2
  - name: aws-root
    kind: secret
  - name: k8s-admin
    kind: exec
    grant: ["/usr/local/bin/k8s-grant"]
    revoke: ["/usr/local/bin/k8s-revoke"]
    timeout: 30s
policies:
  - name: everything
    resources: [bastion, prod-db, aws-root, k8s-admin]
    who: { groups: [oncall] }
    approval: { mode: auto }
    duration: { default: 30m, max: 2h }
"#;

#[test]
fn the_documented_example_loads() {
    let set = breakglass_core::policy::PolicySet::parse(EXAMPLE).expect("parses");
    assert_eq!(set.resources.len(), 4);
    for r in &set.resources {
        breakglass_connectors::check(r).unwrap_or_else(|e| panic!("{}: {e}", r.name));
    }
}
