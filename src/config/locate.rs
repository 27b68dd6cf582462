//! Where each key of `gateway.toml` is written, so that a problem can say
//! `gateway.toml:12:1: [[routes]] "mail".upstream: …`.
//!
//! The key paths are spelled exactly as the validator names them (`[server].listen`,
//! `[server.tls].cert`, `[[routes]] "mail".upstream`, `[oauth.scopes]."email"`); toml_edit's
//! parser keeps the byte span of every key, which becomes a 1-based line and column. A
//! problem whose exact key is not written in the file (a missing key, a default) points at
//! the nearest enclosing one that is, or at nothing.

use std::collections::HashMap;
use toml_edit::{Item, TableLike, Value};

/// Line and column (1-based, columns in characters) of every key written in the file.
#[derive(Debug, Default, Clone)]
pub(crate) struct Locations {
    keys: HashMap<String, (usize, usize)>,
}

impl Locations {
    /// Locations of the keys in `text`; empty when it does not parse (the TOML error then
    /// carries its own position).
    pub(crate) fn of(text: &str) -> Self {
        let mut out = Self::default();
        if let Ok(doc) = toml_edit::ImDocument::parse(text) {
            let index = LineIndex::new(text);
            out.top(doc.as_table(), &index);
        }
        out
    }

    /// Where `key` is written, else where the nearest enclosing key is.
    pub(crate) fn find(&self, key: &str) -> Option<(usize, usize)> {
        let mut key = key;
        loop {
            if let Some(at) = self.keys.get(key) {
                return Some(*at);
            }
            key = &key[..key.rfind('.')?];
        }
    }

    /// Fills in where each problem's key is written.
    pub(crate) fn locate(&self, mut problems: Vec<super::Problem>) -> Vec<super::Problem> {
        for p in &mut problems {
            p.at = p.at.or_else(|| self.find(&p.key));
        }
        problems
    }

    fn note(&mut self, key: String, span: Option<std::ops::Range<usize>>, index: &LineIndex) {
        if let Some(span) = span {
            self.keys.entry(key).or_insert_with(|| index.at(span.start));
        }
    }

    /// The document: `[section]` tables, `[[section]]` entries, and stray top-level keys.
    fn top(&mut self, table: &dyn TableLike, index: &LineIndex) {
        for (name, item) in table.iter() {
            let key_span = table.get_key_value(name).and_then(|(k, _)| k.span());
            // The bare name too, for an unknown section.
            self.note(name.to_string(), item.span().or(key_span.clone()), index);
            if let Some(inner) = item.as_table_like() {
                let label = format!("[{name}]");
                self.note(label.clone(), item.span().or(key_span), index);
                self.table(&label, inner, index);
            } else if let Some(entries) = entries(item) {
                for (i, (entry, span)) in entries.into_iter().enumerate() {
                    let label = super::checker::entry_label(name, i, named(entry));
                    self.note(label.clone(), span, index);
                    self.table(&label, entry, index);
                }
            }
        }
    }

    /// The keys of one table whose own label is `label` (`[server]`, `[[routes]] "mail"`).
    fn table(&mut self, label: &str, table: &dyn TableLike, index: &LineIndex) {
        for (name, item) in table.iter() {
            let key_span = table.get_key_value(name).and_then(|(k, _)| k.span());
            match (item.as_table_like(), label.strip_suffix(']')) {
                (Some(inner), Some(open)) if !label.starts_with("[[") => {
                    let label = format!("{open}.{name}]");
                    self.note(label.clone(), item.span().or(key_span), index);
                    self.table(&label, inner, index);
                }
                _ => {
                    self.note(format!("{label}.{name}"), key_span.clone(), index);
                    self.note(format!("{label}.{name:?}"), key_span, index);
                }
            }
        }
    }
}

/// The entries of `[[section]]` (or `section = [{…}, …]`) with the span of each.
#[allow(clippy::type_complexity)]
fn entries(item: &Item) -> Option<Vec<(&dyn TableLike, Option<std::ops::Range<usize>>)>> {
    match item {
        Item::ArrayOfTables(a) => Some(a.iter().map(|t| (t as &dyn TableLike, t.span())).collect()),
        Item::Value(Value::Array(a)) if a.iter().all(|v| v.as_inline_table().is_some()) => Some(
            a.iter()
                .filter_map(|v| Some((v.as_inline_table()? as &dyn TableLike, v.span())))
                .collect(),
        ),
        _ => None,
    }
}

/// An entry's `name` (routes) or `id` (clients), which the validator labels it by.
fn named(entry: &dyn TableLike) -> Option<&str> {
    entry
        .get("name")
        .or_else(|| entry.get("id"))
        .and_then(Item::as_str)
}

/// Byte offsets → 1-based line and column.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self { text }
    }

    pub(crate) fn at(&self, offset: usize) -> (usize, usize) {
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = before.matches('\n').count() + 1;
        (line, before[line_start..].chars().count() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"[server]
listen = "127.0.0.1:1"

[server.tls]
cert = "c.pem"

[oauth.scopes]
"email.send" = "Send"

[[routes]]
name = "mail"
  upstream = "http://x"

[[clients]]
id = "app"
"#;

    #[test]
    fn keys_are_found_by_the_validators_spelling() {
        let at = Locations::of(TEXT);
        let cases = [
            ("[server]", Some((1, 1))),
            ("[server].listen", Some((2, 1))),
            ("[server.tls].cert", Some((5, 1))),
            ("[oauth.scopes].\"email.send\"", Some((8, 1))),
            ("[[routes]] \"mail\"", Some((10, 1))),
            ("[[routes]] \"mail\".upstream", Some((12, 3))),
            ("[[clients]] \"app\".id", Some((15, 1))),
        ];
        for (key, want) in cases {
            assert_eq!(at.find(key), want, "{key}");
        }
    }

    #[test]
    fn a_key_not_written_points_at_its_table_or_nowhere() {
        let at = Locations::of(TEXT);
        assert_eq!(at.find("[[routes]] \"mail\".timeout"), Some((10, 1)));
        assert_eq!(at.find("[server.tls].key"), at.find("[server.tls]"));
        assert_eq!(at.find("[verify].cache_ttl"), None);
        assert_eq!(Locations::of("[oops").find("[oops]"), None);
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(LineIndex::new("a\n\"ü\" = 1").at(7), (2, 5));
    }
}
