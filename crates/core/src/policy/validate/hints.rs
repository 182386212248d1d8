//! Suggestions for misspelt or misplaced fields and values.

use super::fields::{
    APPROVAL_FIELDS, DURATION_FIELDS, POLICY_FIELDS, REQUIRE_FIELDS, REVIEW_FIELDS, WHO_FIELDS,
};

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest expected field, if the unknown one looks like a typo of it.
pub(in crate::policy) fn did_you_mean<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    // Bounded work: no suggestions for very long keys or very many candidates.
    if key.len() > 64 || allowed.len() > 1000 {
        return None;
    }
    let lower = key.to_ascii_lowercase();
    let underscored = lower.replace('-', "_");
    let close = allowed
        .iter()
        .map(|a| {
            let d = edit_distance(&lower, a).min(edit_distance(&underscored, a));
            (d, *a)
        })
        .filter(|(d, a)| *d <= if a.len() <= 4 { 1 } else { 2 })
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a);
    // Otherwise a longer or shorter form: `automatic` → `auto`, `principal` → `principals`.
    close.or_else(|| {
        allowed.iter().copied().find(|a| {
            a.len() >= 3
                && lower.len() >= 3
                && (lower.starts_with(a) || a.starts_with(lower.as_str()))
        })
    })
}

/// Where a field belongs when it was written one level too high in a policy.
fn belongs_under(key: &str) -> Option<&'static str> {
    [
        ("who", WHO_FIELDS),
        ("require", REQUIRE_FIELDS),
        ("approval", APPROVAL_FIELDS),
        ("duration", DURATION_FIELDS),
        ("review", REVIEW_FIELDS),
    ]
    .into_iter()
    .find(|(_, fields)| fields.contains(&key))
    .map(|(parent, _)| parent)
}

pub(super) fn unknown_field_hint(key: &str, allowed: &[&str]) -> String {
    if let Some(s) = did_you_mean(key, allowed) {
        return format!("did you mean `{s}`?");
    }
    if allowed == POLICY_FIELDS
        && let Some(parent) = belongs_under(key)
    {
        return format!("`{key}` belongs under `{parent}:`");
    }
    "remove it or fix its spelling".to_string()
}
