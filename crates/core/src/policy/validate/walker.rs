//! The walker's primitives: the list of problems found, typed reads of nodes that report what
//! is wrong with them, and names (checked, recorded, looked up).

use super::super::PolicyError;
use super::super::yaml::{Node, position};
use super::hints::{did_you_mean, unknown_field_hint};
use serde_saphyr::{Location, Spanned};
use std::collections::HashMap;
use std::time::Duration;

pub(super) type N = Spanned<Node>;

const NAME_HINT: &str = "names use lower-case letters, digits, '.', '_' and '-', start with a letter or digit, at most 63 characters";
const DURATION_HINT: &str = "durations look like 90s, 30m, 2h, 3d or 1h30m";

/// Names of resources, policies, sinks, users and groups: `^[a-z0-9][a-z0-9._-]{0,62}$`.
pub(super) fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().enumerate().all(|(i, c)| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || (i > 0 && matches!(c, b'.' | b'_' | b'-'))
        })
}

/// The entries of a mapping whose keys were all checked against the expected fields.
pub(super) struct Obj<'a> {
    pub(super) loc: Location,
    pub(super) entries: Vec<(&'a str, &'a N, &'a N)>,
    /// Expected fields that an unknown key was reported as a likely misspelling of.
    pub(super) suggested: Vec<&'static str>,
}

impl<'a> Obj<'a> {
    /// The value of a field; an explicit null (`field:` with nothing after) counts as absent.
    pub(super) fn get(&self, key: &str) -> Option<&'a N> {
        self.entries
            .iter()
            .find(|(k, _, v)| *k == key && v.value != Node::Null)
            .map(|(_, _, v)| *v)
    }
    /// The key node of a field (for errors about the field itself).
    pub(super) fn key(&self, key: &str) -> Option<&'a N> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, k, _)| *k)
    }
}

/// Declared names and where each was first declared.
pub(super) type Names = HashMap<String, Location>;

pub(super) fn sorted_names(names: &Names) -> Vec<&str> {
    let mut v: Vec<&str> = names.keys().map(String::as_str).collect();
    v.sort_unstable();
    v
}

/// At most this many problems are listed; the rest are counted.
const MAX_ERRORS: usize = 100;

pub(super) struct V {
    pub(super) errs: Vec<PolicyError>,
    /// Problems found beyond [`MAX_ERRORS`].
    pub(super) more: usize,
}

impl V {
    pub(super) fn err(&mut self, loc: &Location, message: impl Into<String>, hint: Option<String>) {
        if self.errs.len() >= MAX_ERRORS {
            self.more += 1;
            return;
        }
        let (line, column) = position(loc);
        self.errs.push(PolicyError {
            line,
            column,
            message: message.into(),
            hint,
        });
    }

    pub(super) fn err_h(&mut self, loc: &Location, message: impl Into<String>, hint: &str) {
        self.err(loc, message, Some(hint.to_string()));
    }

    /// Checks that `n` is a mapping whose keys are all among `allowed`.
    pub(super) fn obj<'a>(
        &mut self,
        n: &'a N,
        what: &str,
        allowed: &[&'static str],
    ) -> Option<Obj<'a>> {
        let Node::Map(entries) = &n.value else {
            self.err(
                &n.referenced,
                format!("{what} must be a mapping, found {}", n.value.describe()),
                Some(format!("expected fields: {}", allowed.join(", "))),
            );
            return None;
        };
        let mut out = Obj {
            loc: n.referenced,
            entries: Vec::with_capacity(entries.len()),
            suggested: Vec::new(),
        };
        for (k, v) in entries {
            let Node::Str(key) = &k.value else {
                self.err(
                    &k.referenced,
                    format!(
                        "keys in {what} must be field names, found {}",
                        k.value.describe()
                    ),
                    Some(format!("expected one of {}", allowed.join(", "))),
                );
                continue;
            };
            if allowed.contains(&key.as_str()) {
                out.entries.push((key.as_str(), k, v));
            } else {
                if let Some(s) = did_you_mean(key, allowed) {
                    out.suggested.push(s);
                }
                self.err(
                    &k.referenced,
                    format!(
                        "unknown field `{}` in {what}, expected one of {}",
                        clip(key),
                        allowed.join(", ")
                    ),
                    Some(unknown_field_hint(key, allowed)),
                );
            }
        }
        Some(out)
    }

    /// A required field; reports its absence at the mapping.
    pub(super) fn req<'a>(
        &mut self,
        o: &Obj<'a>,
        key: &str,
        what: &str,
        hint: &str,
    ) -> Option<&'a N> {
        let v = o.get(key);
        // A misspelt key was already reported with "did you mean `key`?".
        if v.is_none() && !o.suggested.contains(&key) {
            let at = o.key(key).map(|k| k.referenced).unwrap_or(o.loc);
            self.err_h(&at, format!("{what} has no `{key}`"), hint);
        }
        v
    }

    pub(super) fn string<'a>(&mut self, n: &'a N, what: &str) -> Option<&'a str> {
        match &n.value {
            Node::Str(s) => Some(s.as_str()),
            Node::Int(_) | Node::Float(_) | Node::Bool(_) => {
                self.err_h(
                    &n.referenced,
                    format!("{what} must be a string, found {}", n.value.describe()),
                    "put it in quotes",
                );
                None
            }
            other => {
                self.err(
                    &n.referenced,
                    format!("{what} must be a string, found {}", other.describe()),
                    None,
                );
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, n: &N, what: &str) -> Option<bool> {
        match n.value {
            Node::Bool(b) => Some(b),
            _ => {
                self.err_h(
                    &n.referenced,
                    format!("{what} must be true or false, found {}", n.value.describe()),
                    "write true or false",
                );
                None
            }
        }
    }

    pub(super) fn uint(&mut self, n: &N, what: &str, max: u64) -> Option<u64> {
        match n.value {
            Node::Int(i) if i >= 0 && i <= i128::from(max) => u64::try_from(i).ok(),
            Node::Int(i) => {
                self.err(
                    &n.referenced,
                    format!("{what} is {i}; it must be between 0 and {max}"),
                    None,
                );
                None
            }
            _ => {
                self.err(
                    &n.referenced,
                    format!(
                        "{what} must be a whole number, found {}",
                        n.value.describe()
                    ),
                    None,
                );
                None
            }
        }
    }

    pub(super) fn list<'a>(&mut self, n: &'a N, what: &str, example: &str) -> Option<&'a [N]> {
        match &n.value {
            Node::Seq(items) => Some(items),
            other => {
                self.err(
                    &n.referenced,
                    format!("{what} must be a list, found {}", other.describe()),
                    Some(format!("write it as a list, e.g. {example}")),
                );
                None
            }
        }
    }

    /// A list of strings, each with its position.
    pub(super) fn strings<'a>(
        &mut self,
        n: &'a N,
        what: &str,
        example: &str,
    ) -> Vec<(&'a str, &'a N)> {
        let Some(items) = self.list(n, what, example) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(s) = self.string(item, &format!("each item of {what}")) {
                out.push((s, item));
            }
        }
        out
    }

    /// A list of user, group or sink names.
    pub(super) fn names(&mut self, n: &N, what: &str, example: &str) -> Vec<String> {
        let items = self.strings(n, what, example);
        let mut out: Vec<String> = Vec::with_capacity(items.len());
        for (s, item) in items {
            if !valid_name(s) {
                self.err_h(
                    &item.referenced,
                    format!("bad name {:?} in {what}", clip(s)),
                    NAME_HINT,
                );
            } else if !out.iter().any(|x| x == s) {
                out.push(s.to_string());
            }
        }
        out
    }

    pub(super) fn duration(&mut self, n: &N, what: &str) -> Option<Duration> {
        let s = match &n.value {
            Node::Str(s) => s,
            Node::Int(i) => {
                self.err_h(
                    &n.referenced,
                    format!("{what} is a bare number ({i}); a duration needs a unit"),
                    &format!("write e.g. {i}m or {i}s"),
                );
                return None;
            }
            other => {
                self.err_h(
                    &n.referenced,
                    format!("{what} must be a duration, found {}", other.describe()),
                    DURATION_HINT,
                );
                return None;
            }
        };
        match crate::duration::parse(s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err_h(&n.referenced, format!("{what}: {e}"), DURATION_HINT);
                None
            }
        }
    }
}

/// Clips user text quoted back in messages.
pub(super) fn clip(s: &str) -> String {
    if s.chars().count() <= 64 {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(61).collect();
        c.push_str("...");
        c
    }
}

/// The name of a mapping entry, if it is a string, without reporting anything.
pub(super) fn peek_name(n: &N) -> Option<&str> {
    let Node::Map(entries) = &n.value else {
        return None;
    };
    entries
        .iter()
        .find_map(|(k, v)| match (&k.value, &v.value) {
            (Node::Str(k), Node::Str(v)) if k == "name" => Some(v.as_str()),
            _ => None,
        })
}

/// Checks a `name`, records it, and reports duplicates. Returns the name if valid and new.
pub(super) fn name_of(
    v: &mut V,
    o: &Obj<'_>,
    what: &str,
    index: usize,
    seen: &mut Names,
) -> Option<String> {
    let n = v.req(
        o,
        "name",
        &format!("{what} #{}", index + 1),
        &format!("give every {what} a unique name, e.g. name: prod-db"),
    )?;
    let name = v.string(n, &format!("the name of {what} #{}", index + 1))?;
    if !valid_name(name) {
        v.err_h(
            &n.referenced,
            format!("bad {what} name {:?}", clip(name)),
            NAME_HINT,
        );
        // Still record it so references to it do not produce a second, confusing error.
        seen.entry(name.to_string()).or_insert(n.referenced);
        return None;
    }
    if let Some(first) = seen.get(name) {
        let first = position(first).0;
        v.err_h(
            &n.referenced,
            match first {
                Some(l) => format!("{what} `{name}` is declared twice (first at line {l})"),
                None => format!("{what} `{name}` is declared twice"),
            },
            &format!("{what} names must be unique"),
        );
        return None;
    }
    seen.insert(name.to_string(), n.referenced);
    Some(name.to_string())
}
