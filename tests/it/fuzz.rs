//! Fuzzing, bounded for CI: the CSV readers, the stream message decoder and the pipeline parser
//! meet arbitrary and mangled input and answer with a result — never a panic, never a hang.
//! (proptest over bytes: a few hundred cases each, seeded, a second or two in all.)

use std::path::Path;

use findashpro::config::{FileFormat, Pipeline};
use findashpro::sources::files::read_bar_file;
use findashpro::sources::redis_stream::{Entry, decode};
use proptest::prelude::*;

const FORMATS: [FileFormat; 5] = [
    FileFormat::Kaggle,
    FileFormat::BacktestingPy,
    FileFormat::Yahoo,
    FileFormat::Backtrader,
    FileFormat::Cryptodatadownload,
];

/// Bytes that look like CSV often enough to reach the row parser: a real header, then lines of
/// digits, separators, quotes, signs, letters and stray bytes.
fn csvish() -> impl Strategy<Value = Vec<u8>> {
    let cell = prop_oneof![
        "[0-9]{1,6}(\\.[0-9]{1,4})?".prop_map(String::into_bytes),
        "-?[0-9e+.-]{0,8}".prop_map(String::into_bytes),
        "20[0-9]{2}-[0-9]{2}-[0-9]{2}( [0-9]{2}:[0-9]{2}(:[0-9]{2})?)?"
            .prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..6),
        Just(b"\"".to_vec()),
        Just(b"NaN".to_vec()),
        Just(Vec::new()),
    ];
    let line = prop::collection::vec(cell, 0..9).prop_map(|cells| cells.join(&b","[..]));
    let header = prop_oneof![
        Just(b"date,open,high,low,close,volume,Name".to_vec()),
        Just(b",Open,High,Low,Close,Volume".to_vec()),
        Just(b"Date,Open,High,Low,Close,Adj Close,Volume".to_vec()),
        Just(
            b"https://www.CryptoDataDownload.com\nunix,date,symbol,open,high,low,close,Volume X"
                .to_vec()
        ),
        prop::collection::vec(any::<u8>(), 0..40),
    ];
    (header, prop::collection::vec(line, 0..12), any::<bool>()).prop_map(|(h, lines, crlf)| {
        let sep: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        let mut out = h;
        for l in lines {
            out.extend_from_slice(sep);
            out.extend_from_slice(&l);
        }
        out
    })
}

fn read_all_formats(dir: &Path, bytes: &[u8]) {
    let p = dir.join("FUZZ.csv");
    std::fs::write(&p, bytes).expect("write");
    for f in FORMATS {
        let _ = read_bar_file(&p, f);
    }
    let _ = findashpro::sources::files::detect_format(&p);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn csv_readers_answer_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let dir = tempfile::tempdir().expect("tempdir");
        read_all_formats(dir.path(), &bytes);
    }

    #[test]
    fn csv_readers_answer_csv_like_input(bytes in csvish()) {
        let dir = tempfile::tempdir().expect("tempdir");
        read_all_formats(dir.path(), &bytes);
    }

    #[test]
    fn the_decoder_answers_any_message(
        fields in prop::collection::vec(
            (
                prop_oneof![
                    Just("kind".to_string()), Just("ticker".to_string()), Just("ts".to_string()),
                    Just("open".to_string()), Just("close".to_string()), Just("cycle".to_string()),
                    Just("of".to_string()), Just("floor".to_string()), Just("until".to_string()),
                    ".{0,8}",
                ],
                prop_oneof![
                    Just("bar".to_string()), Just("watermark".to_string()), Just("ticker".to_string()),
                    "-?[0-9]{0,20}", "[0-9T:+Z.-]{0,30}", ".{0,40}",
                ],
            ),
            0..12,
        ),
        id in "[0-9]{0,20}(-[0-9]{0,5})?",
        clock in any::<u64>(),
        ahead in any::<i64>(),
    ) {
        let e = Entry { id, fields: Some(fields.into_iter().collect()) };
        if let Ok(w) = decode(&e) {
            let _ = w.check_times(Some(clock), ahead);
            let _ = w.check_times(e.added_ms(), 86_400);
        }
    }

    #[test]
    fn the_pipeline_parser_answers_any_text(text in ".{0,400}") {
        let _ = Pipeline::parse(&text, Path::new("fuzz.toml"));
    }

    #[test]
    fn the_pipeline_parser_answers_mangled_pipelines(
        at in any::<prop::sample::Index>(),
        len in 0usize..12,
        insert in ".{0,12}",
    ) {
        let base = include_str!("../../pipelines/sp500_ml.toml");
        let mut chars: Vec<char> = base.chars().collect();
        let i = at.index(chars.len());
        let end = (i + len).min(chars.len());
        chars.splice(i..end, insert.chars());
        let text: String = chars.into_iter().collect();
        let _ = Pipeline::parse(&text, Path::new("fuzz.toml"));
    }
}
