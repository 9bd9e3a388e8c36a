//! A stream entry as the live run reads it: its id and its field/value pairs.
//!
//! The pairs of one entry sit back to back in one string ([`Fields`]), so an entry costs three
//! allocations (id, text, ends) whatever its number of fields. Held as a `Vec<(String, String)>`
//! it cost two per field: a bar message of seven fields, sixteen. At 100 k messages a second on
//! two cores that was a third of the reader's time in the allocator (measured 2026-12-07).

use std::collections::HashMap;

use serde::ser::{Serialize, SerializeSeq, Serializer};

/// A stream entry: its id and fields (`None` when the entry was trimmed away while pending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Stream id (`ms-seq`).
    pub id: String,
    /// Field/value pairs in order.
    pub fields: Option<Fields>,
}

impl Entry {
    /// Milliseconds since the epoch at which Redis added the entry (the id's first part).
    pub fn added_ms(&self) -> Option<u64> {
        self.id.split('-').next()?.parse().ok()
    }

    /// The fields as a map (last value wins).
    pub fn map(&self) -> HashMap<&str, &str> {
        self.fields.iter().flat_map(Fields::iter).collect()
    }

    /// One field's value (the last, when it repeats), found by a scan: a message has a handful
    /// of fields, fewer than hashing them into a map would pay for.
    pub fn field(&self, name: &str) -> Option<&str> {
        let f = self.fields.as_ref()?;
        (0..f.len())
            .rev()
            .map(|i| f.pair(i))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// An entry's field/value pairs in order, their text back to back in one string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    text: String,
    /// Where each name ends, then where its value ends, pair after pair.
    ends: Vec<usize>,
}

impl Fields {
    /// Room for `pairs` pairs of `bytes` bytes in all.
    pub fn with_capacity(pairs: usize, bytes: usize) -> Self {
        Fields {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(pairs * 2),
        }
    }

    /// Appends a pair.
    pub fn push(&mut self, name: &str, value: &str) {
        for part in [name, value] {
            self.text.push_str(part);
            self.ends.push(self.text.len());
        }
    }

    /// Appends a pair given as bytes; bytes that are not UTF-8 are replaced (U+FFFD), as
    /// `String::from_utf8_lossy` does, so a garbled message still reaches the dead-letter stream
    /// with what could be read of it.
    pub fn push_bytes(&mut self, name: &[u8], value: &[u8]) {
        for part in [name, value] {
            match std::str::from_utf8(part) {
                Ok(s) => self.text.push_str(s),
                Err(_) => self.text.push_str(&String::from_utf8_lossy(part)),
            }
            self.ends.push(self.text.len());
        }
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    /// Whether there is no pair.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The `i`-th pair. Panics if `i` is out of range, like slice indexing.
    pub fn pair(&self, i: usize) -> (&str, &str) {
        let start = if i == 0 { 0 } else { self.ends[2 * i - 1] };
        let (name_end, value_end) = (self.ends[2 * i], self.ends[2 * i + 1]);
        (&self.text[start..name_end], &self.text[name_end..value_end])
    }

    /// The pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        (0..self.len()).map(|i| self.pair(i))
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Fields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let mut f = Fields::default();
        for (k, v) in pairs {
            f.push(k.as_ref(), v.as_ref());
        }
        f
    }
}

/// As a list of `[name, value]` pairs: the JSON the dead-letter stream and the audit log have
/// always kept.
impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for pair in self.iter() {
            seq.serialize_element(&pair)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_read_back_in_order_and_the_last_of_a_name_wins() {
        let f: Fields = [
            ("ticker", "BRK.B"),
            ("", ""),
            ("close", "1.0842"),
            ("ticker", "€/$"),
        ]
        .into_iter()
        .collect();
        assert_eq!(f.len(), 4);
        assert_eq!(
            f.iter().collect::<Vec<_>>(),
            vec![
                ("ticker", "BRK.B"),
                ("", ""),
                ("close", "1.0842"),
                ("ticker", "€/$")
            ]
        );
        let e = Entry {
            id: "1700000000000-3".into(),
            fields: Some(f),
        };
        assert_eq!(e.field("ticker"), Some("€/$"));
        assert_eq!(e.field("open"), None);
        assert_eq!(e.map()["close"], "1.0842");
        assert_eq!(e.added_ms(), Some(1_700_000_000_000));
    }

    #[test]
    fn bytes_that_are_not_utf8_are_replaced_not_lost() {
        let mut f = Fields::default();
        f.push_bytes(b"ticker", b"AB\xffC");
        assert_eq!(f.pair(0), ("ticker", "AB\u{fffd}C"));
    }

    #[test]
    fn serialises_as_the_list_of_pairs_it_always_was() {
        let f: Fields = [("a", "1"), ("b", "x\"y")].into_iter().collect();
        let old: Vec<(String, String)> =
            vec![("a".into(), "1".into()), ("b".into(), "x\"y".into())];
        assert_eq!(
            serde_json::to_string(&Some(f)).expect("json"),
            serde_json::to_string(&Some(old)).expect("json")
        );
        assert_eq!(
            serde_json::to_string(&None::<Fields>).expect("json"),
            "null"
        );
    }
}
