//! A generic YAML tree in which every node and every mapping key carries its source position.
//!
//! Parsing into this tree first (instead of straight into typed structs) lets validation go on
//! past the first problem and report every error of a file at once, each at its line and column.

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use serde_saphyr::{Budget, Location, Options, Spanned};
use std::fmt;

/// One YAML node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    /// Entries in document order (duplicate keys are refused by the parser).
    Map(Vec<(Spanned<Node>, Spanned<Node>)>),
}

impl Node {
    /// What kind of node this is, for error messages ("found a list").
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Node::Null => "nothing (null)",
            Node::Bool(_) => "a boolean",
            Node::Int(_) => "a number",
            Node::Float(_) => "a number",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }

    /// The node as JSON (mapping keys as strings), for resource and sink settings.
    pub(crate) fn to_json(&self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(i) => {
                if let Ok(v) = i64::try_from(*i) {
                    Value::from(v)
                } else if let Ok(v) = u64::try_from(*i) {
                    Value::from(v)
                } else {
                    Value::String(i.to_string())
                }
            }
            Node::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Node::Str(s) => Value::String(s.clone()),
            Node::Seq(items) => Value::Array(items.iter().map(|n| n.value.to_json()).collect()),
            Node::Map(entries) => Value::Object(map_to_json(entries)),
        }
    }

    /// A scalar key as text.
    pub(crate) fn key_text(&self) -> Option<String> {
        match self {
            Node::Str(s) => Some(s.clone()),
            Node::Int(i) => Some(i.to_string()),
            Node::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

pub(crate) fn map_to_json(entries: &[(Spanned<Node>, Spanned<Node>)]) -> Map<String, Value> {
    entries
        .iter()
        .filter_map(|(k, v)| Some((k.value.key_text()?, v.value.to_json())))
        .collect()
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(i128::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Int(i128::from(v)))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        Ok(Node::Int(i128::try_from(v).unwrap_or(i128::MAX)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        Ok(Node::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<Spanned<Node>>()? {
            let v = map.next_value::<Spanned<Node>>()?;
            entries.push((k, v));
        }
        Ok(Node::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

/// Parser limits. Policy files are small and hand-written: these are far above any real file
/// and far below what an anchor/alias bomb or a nesting bomb needs.
fn options() -> Options {
    let mut budget = Budget::default();
    budget.max_events = 200_000;
    budget.max_nodes = 100_000;
    budget.max_depth = 32;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_documents = 1;
    budget.max_total_scalar_bytes = 2 * super::MAX_POLICY_BYTES;
    budget.max_recorded_anchor_events = 20_000;
    budget.max_merge_keys = 1_000;
    let mut o = Options::default();
    o.budget = Some(budget);
    o.alias_limits.max_total_replayed_events = 20_000;
    o.alias_limits.max_replay_stack_depth = 16;
    o.with_snippet = false;
    o
}

/// Line and column of a location, `None` when unknown.
pub(crate) fn position(loc: &Location) -> (Option<usize>, Option<usize>) {
    let line = usize::try_from(loc.line()).ok().filter(|l| *l > 0);
    let column = line.and(usize::try_from(loc.column()).ok().filter(|c| *c > 0));
    (line, column)
}

/// A YAML-level failure (syntax, limits): message and position.
pub(crate) struct YamlError {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
    pub budget: bool,
}

/// Parses one YAML document into a positioned tree (an empty document is `Null`).
pub(crate) fn parse(text: &str) -> Result<Spanned<Node>, YamlError> {
    serde_saphyr::from_str_with_options::<Option<Spanned<Node>>>(text, options())
        .map(|n| {
            n.unwrap_or_else(|| Spanned::new(Node::Null, Location::UNKNOWN, Location::UNKNOWN))
        })
        .map_err(|e| {
            let (line, column) = e.location().map(|l| position(&l)).unwrap_or((None, None));
            let text = e.to_string();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            let message = strip_position(first).trim().to_string();
            let lower = message.to_ascii_lowercase();
            let budget = lower.contains("budget")
                || lower.contains("alias")
                || lower.contains("limit")
                || lower.contains("depth");
            YamlError {
                line,
                column,
                message: if message.is_empty() {
                    "invalid YAML".to_string()
                } else {
                    message
                },
                budget,
            }
        })
}

/// Drops a trailing " at line N, column M" (we report the position separately).
fn strip_position(s: &str) -> &str {
    match s.rfind(" at line ") {
        Some(i) if s[i..].contains("column") => &s[..i],
        _ => s,
    }
}
