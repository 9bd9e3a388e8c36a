//! `--set key=value`: a pipeline changed from the command line, on any key, before it is parsed.
//!
//! The overrides are applied to the file's TOML document (comments and layout kept), and the
//! result is what the run parses, validates, fingerprints and writes into its folder as
//! `pipeline.toml` — so a run says exactly what produced it, and two runs differing by a `--set`
//! have different fingerprints.

use toml_edit::{DocumentMut, Item, Table, Value};

/// A `--set` that cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    /// Not `key=value`, or an empty key segment.
    #[error(
        "--set {text:?}: expected key=value with a dotted key (model.fast=10, features.0.period=14)"
    )]
    Malformed {
        /// The argument given.
        text: String,
    },
    /// The path runs through a value that is not a table or an array.
    #[error("--set {text:?}: `{at}` is {kind}, not a table")]
    NotATable {
        /// The argument given.
        text: String,
        /// The dotted prefix that is not a table.
        at: String,
        /// What it is.
        kind: &'static str,
    },
    /// An array index past the end.
    #[error("--set {text:?}: `{at}` has {len} entries; index {index} is past the end")]
    Index {
        /// The argument given.
        text: String,
        /// The dotted prefix naming the array.
        at: String,
        /// Its length.
        len: usize,
        /// The index asked for.
        index: usize,
    },
    /// The pipeline file is not TOML (the parser reports it with its place when loading).
    #[error(transparent)]
    Toml(#[from] toml_edit::TomlError),
}

impl crate::fault::Blame for OverrideError {
    /// Every `--set` is the user's.
    fn fault(&self) -> crate::fault::Fault {
        crate::fault::Fault::Input
    }
}

/// The value of a `--set`: TOML when it reads as a TOML value (`10`, `0.02`, `true`, `"x"`,
/// `[1, 2]`, `{ a = 1 }`), else the text as a string (`AAPL`, `ml`). A date or time (`2020-01-02`)
/// stays a string, as the pipeline writes times.
pub fn value_of(text: &str) -> Value {
    match text.trim().parse::<Value>() {
        Ok(Value::Datetime(_)) | Err(_) => Value::from(text),
        Ok(v) => v.decorated(" ", ""),
    }
}

/// Applies each `key=value` to the TOML `text`, in order, and returns the new text.
///
/// A key is dotted: table names, then the key (`risk.sizing.fraction`); a number indexes an array
/// or an array of tables (`features.0.period`), and one past an array of tables' end appends a
/// table to it (`features.2.kind=ema` beside two features). Missing tables are created; whether a key is
/// known is for the pipeline's parser to say, with its place in the returned text.
///
/// # Errors
/// A malformed argument, a path through a value that is not a table, an index past the end, or
/// text that is not TOML.
pub fn apply(text: &str, sets: &[String]) -> Result<String, OverrideError> {
    if sets.is_empty() {
        return Ok(text.to_string());
    }
    let mut doc: DocumentMut = text.parse().map_err(OverrideError::Toml)?;
    for set in sets {
        let malformed = || OverrideError::Malformed { text: set.clone() };
        let (key, value) = set.split_once('=').ok_or_else(malformed)?;
        let path: Vec<&str> = key.trim().split('.').map(str::trim).collect();
        if path.iter().any(|s| s.is_empty()) {
            return Err(malformed());
        }
        set_in(doc.as_table_mut(), &path, value_of(value), set, 0)?;
    }
    Ok(doc.to_string())
}

/// What a TOML item is, for messages.
fn kind(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Value(Value::String(_)) => "a string",
        Item::Value(Value::Integer(_)) => "an integer",
        Item::Value(Value::Float(_)) => "a float",
        Item::Value(Value::Boolean(_)) => "a boolean",
        Item::Value(Value::Datetime(_)) => "a date-time",
        Item::Value(Value::Array(_)) | Item::ArrayOfTables(_) => "an array",
        Item::Value(Value::InlineTable(_)) | Item::Table(_) => "a table",
    }
}

fn set_in(
    table: &mut Table,
    path: &[&str],
    value: Value,
    text: &str,
    depth: usize,
) -> Result<(), OverrideError> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(());
    };
    if rest.is_empty() {
        table.insert(first, Item::Value(value));
        return Ok(());
    }
    if !table.contains_key(first) {
        let mut t = Table::new();
        t.set_implicit(true);
        table.insert(first, Item::Table(t));
    }
    let at = path_prefix(text, depth + 1);
    let item = table
        .get_mut(first)
        .ok_or_else(|| OverrideError::Malformed { text: text.into() })?;
    set_item(item, rest, value, text, depth + 1, &at)
}

fn set_item(
    item: &mut Item,
    rest: &[&str],
    value: Value,
    text: &str,
    depth: usize,
    at: &str,
) -> Result<(), OverrideError> {
    let index = |len: usize| -> Result<usize, OverrideError> {
        let i: usize = rest[0].parse().map_err(|_| OverrideError::NotATable {
            text: text.into(),
            at: at.to_string(),
            kind: "an array",
        })?;
        if i >= len {
            return Err(OverrideError::Index {
                text: text.into(),
                at: at.to_string(),
                len,
                index: i,
            });
        }
        Ok(i)
    };
    match item {
        Item::Table(t) => set_in(t, rest, value, text, depth),
        Item::ArrayOfTables(a) => {
            // One past the end appends a table (`features.3.kind=sma` beside three features).
            if rest[0].parse::<usize>().ok() == Some(a.len()) {
                a.push(Table::new());
            }
            let i = index(a.len())?;
            let t = a
                .get_mut(i)
                .ok_or_else(|| OverrideError::Malformed { text: text.into() })?;
            set_in(t, &rest[1..], value, text, depth + 1)
        }
        Item::Value(Value::InlineTable(t)) => {
            let mut table = t.clone().into_table();
            set_in(&mut table, rest, value, text, depth)?;
            *item = Item::Value(Value::InlineTable(table.into_inline_table()));
            Ok(())
        }
        Item::Value(Value::Array(a)) => {
            let i = index(a.len())?;
            if rest.len() == 1 {
                a.replace(i, value);
                return Ok(());
            }
            let element = a
                .get_mut(i)
                .ok_or_else(|| OverrideError::Malformed { text: text.into() })?;
            let mut inner = Item::Value(element.clone());
            let at_inner = path_prefix(text, depth + 1);
            set_item(&mut inner, &rest[1..], value, text, depth + 1, &at_inner)?;
            if let Item::Value(v) = inner {
                *element = v;
            }
            Ok(())
        }
        other => Err(OverrideError::NotATable {
            text: text.into(),
            at: at.to_string(),
            kind: kind(other),
        }),
    }
}

/// The first `n` dotted segments of a `--set`'s key.
fn path_prefix(text: &str, n: usize) -> String {
    let key = text.split_once('=').map_or(text, |(k, _)| k);
    key.split('.').take(n).collect::<Vec<_>>().join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIPELINE: &str = r#"# a pipeline
name = "x"

[model]
kind = "sma_cross" # the rule
fast = 10
slow = 30

[[features]]
kind = "rsi"
period = 14

[[features]]
kind = "sma"
period = 20

[source]
kind = "files"
tickers = ["AAPL", "MSFT"]
limits = { a = 1 }
"#;

    fn set(sets: &[&str]) -> Result<toml::Table, OverrideError> {
        let sets: Vec<String> = sets.iter().map(|s| (*s).to_string()).collect();
        let text = apply(PIPELINE, &sets)?;
        Ok(toml::from_str(&text).unwrap_or_default())
    }

    #[test]
    fn one_past_the_end_of_an_array_of_tables_appends_one() {
        let t = set(&["features.2.kind=ema", "features.2.period=5"]).expect("append");
        let f = t["features"].as_array().expect("features");
        assert_eq!(f.len(), 3);
        assert_eq!(f[2]["kind"].as_str(), Some("ema"));
        assert_eq!(f[2]["period"].as_integer(), Some(5));
    }

    #[test]
    fn values_are_typed_as_toml_reads_them_and_text_stays_a_string() {
        let t = set(&[
            "model.fast=5",
            "model.kind=ml",
            "risk.sizing.fraction=0.02",
            "outputs.report=false",
            "source.start=2020-01-02",
            "name=\"y\"",
        ])
        .unwrap_or_default();
        assert_eq!(t["model"]["fast"].as_integer(), Some(5));
        assert_eq!(t["model"]["kind"].as_str(), Some("ml"));
        assert_eq!(t["model"]["slow"].as_integer(), Some(30));
        assert_eq!(t["risk"]["sizing"]["fraction"].as_float(), Some(0.02));
        assert_eq!(t["outputs"]["report"].as_bool(), Some(false));
        assert_eq!(t["source"]["start"].as_str(), Some("2020-01-02"));
        assert_eq!(t["name"].as_str(), Some("y"));
    }

    #[test]
    fn indices_reach_into_arrays_and_arrays_of_tables() {
        let t = set(&[
            "features.1.period=50",
            "source.tickers.0=NVDA",
            "source.limits.a=2",
        ])
        .unwrap_or_default();
        assert_eq!(t["features"][0]["period"].as_integer(), Some(14));
        assert_eq!(t["features"][1]["period"].as_integer(), Some(50));
        assert_eq!(t["source"]["tickers"][0].as_str(), Some("NVDA"));
        assert_eq!(t["source"]["tickers"][1].as_str(), Some("MSFT"));
        assert_eq!(t["source"]["limits"]["a"].as_integer(), Some(2));
    }

    #[test]
    fn comments_and_untouched_lines_are_kept() {
        let text = apply(PIPELINE, &["model.fast=5".into()]).unwrap_or_default();
        assert!(text.contains("# a pipeline"));
        assert!(text.contains("kind = \"sma_cross\" # the rule"));
        assert!(text.contains("fast = 5\n"), "{text}");
    }

    #[test]
    fn bad_sets_name_the_argument_and_the_place() {
        let err = |s: &str| set(&[s]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err("model.fast").contains("expected key=value"));
        assert!(err("model..fast=1").contains("expected key=value"));
        assert!(err("model.fast.x=1").contains("`model.fast` is an integer"));
        assert!(err("features.3.period=1").contains("`features` has 2 entries; index 3"));
        assert!(err("features.x.period=1").contains("`features` is an array"));
        assert!(err("name.x=1").contains("`name` is a string"));
    }
}
