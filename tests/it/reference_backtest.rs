//! `pipelines/reference_sma_cross.toml` reproduces backtesting.py's SMA 10/30 backtest on GOOG.

use findashpro::metrics::compute;
use findashpro::time::format_time;

use crate::common::{close, pipeline, read_csv, repo, run_with};

#[test]
fn trades_equity_and_metrics_match_the_golden_run() {
    let out = run_with(&pipeline("reference_sma_cross.toml"), 1);
    let (h, rows) = read_csv(&repo("tests/fixtures/golden/goog_sma_cross_trades.csv"));
    let col = |n: &str| {
        h.iter()
            .position(|x| x == n)
            .unwrap_or_else(|| panic!("column {n}"))
    };
    let trades = &out.ledger.trades;
    assert_eq!(trades.len(), rows.len(), "32 closed + 1 open");
    for (t, r) in trades.iter().zip(&rows) {
        let f = |n: &str| r[col(n)].parse::<f64>().expect("number");
        assert_eq!(
            format_time(t.entry_ts),
            r[col("entry_date")],
            "trade {}",
            r[0]
        );
        assert_eq!(
            format_time(t.exit_ts),
            r[col("exit_date")],
            "trade {}",
            r[0]
        );
        assert_eq!(t.size, f("size"), "trade {}", r[0]);
        assert_eq!(t.open, r[col("status")].starts_with("open"));
        for (ours, name) in [
            (t.entry_price, "entry_price"),
            (t.exit_price, "exit_price"),
            (t.commission, "commission"),
            (t.pnl, "pnl"),
            (t.return_pct, "return_pct"),
        ] {
            assert!(
                close(ours, f(name), 1e-9),
                "trade {} {name}: ours {ours}, golden {}",
                r[0],
                f(name)
            );
        }
    }
    let (_, eq) = read_csv(&repo("tests/fixtures/golden/goog_sma_cross_equity.csv"));
    assert_eq!(out.ledger.equity.len(), eq.len());
    for (p, r) in out.ledger.equity.iter().zip(&eq) {
        assert_eq!(format_time(p.ts), r[0]);
        let g: f64 = r[1].parse().expect("equity");
        assert!(
            close(p.equity, g, 1e-9),
            "equity at {}: ours {}, golden {g}",
            r[0],
            p.equity
        );
    }
    let m = compute(&out.ledger, &out.quarantine);
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo("tests/fixtures/golden/goog_sma_cross_metrics.json"))
            .expect("metrics"),
    )
    .expect("json");
    let g = |k: &str| {
        golden["numpy_reference"][k]
            .as_f64()
            .unwrap_or_else(|| panic!("golden {k}"))
    };
    for (ours, key) in [
        (m.sharpe, "sharpe"),
        (m.sortino, "sortino"),
        (m.max_drawdown, "max_drawdown"),
        (m.cagr, "annual_return_252"),
        (m.cagr_calendar, "cagr_calendar_365"),
        (m.calmar, "calmar_252"),
        (m.volatility, "volatility"),
        (m.total_return, "total_return"),
    ] {
        assert!(
            close(ours, g(key), 1e-9),
            "{key}: ours {ours}, golden {}",
            g(key)
        );
    }
    assert!(
        close(m.final_equity, 54101.369159999966, 1e-9),
        "final equity {}",
        m.final_equity
    );
    assert_eq!((m.trades, m.open_trades, m.win_rate), (32, 1, 0.5));
}

#[test]
fn a_signal_on_the_last_bar_does_not_fill() {
    // Cut GOOG just after a golden cross: the buy decided on the last bar stays unfilled.
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(repo("data/reference/GOOG.csv")).expect("GOOG");
    // Trade 1 enters on 2004-12-21, so its signal is on 2004-12-20 (bar 85, file line 87).
    let cut: String = text.lines().take(87).map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.path().join("GOOG.csv"), cut).expect("write");
    let p = std::fs::read_to_string(repo("pipelines/reference_sma_cross.toml"))
        .expect("pipeline")
        .replace("data/reference/GOOG.csv", "GOOG.csv");
    let out = run_with(&crate::common::pipeline_text(&p, dir.path()), 1);
    assert!(out.ledger.fills.is_empty());
    let last = out.ledger.orders.last().expect("an order");
    assert_eq!(format_time(last.order.ts), "2004-12-20");
    assert_eq!(
        last.status,
        findashpro::operators::portfolio::OrderStatus::Unfilled
    );
}

#[test]
fn a_parquet_replay_equals_the_csv_replay() {
    use findashpro::bar::{Bar, BarBatch, Tickers};
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, rows) = read_csv(&repo("data/reference/GOOG.csv"));
    let mut bars = BarBatch::default();
    for r in &rows {
        let f = |i: usize| r[i].parse::<f64>().expect("number");
        let ts = findashpro::time::parse_time(&r[0]).expect("date");
        bars.push(Bar {
            ticker: 0,
            ts,
            open: f(1),
            high: f(2),
            low: f(3),
            close: f(4),
            volume: f(5),
        });
    }
    let rb = bars
        .to_arrow(&Tickers::new(["GOOG".to_string()]))
        .expect("arrow");
    let file = std::fs::File::create(dir.path().join("goog.parquet")).expect("create");
    let mut w = parquet::arrow::ArrowWriter::try_new(file, rb.schema(), None).expect("writer");
    w.write(&rb).expect("write");
    w.close().expect("close");
    let text = std::fs::read_to_string(repo("pipelines/reference_sma_cross.toml"))
        .expect("pipeline")
        .replace("format = \"backtesting_py\"", "format = \"parquet\"")
        .replace("data/reference/GOOG.csv", "goog.parquet");
    let from_parquet = run_with(&crate::common::pipeline_text(&text, dir.path()), 1);
    let from_csv = run_with(&pipeline("reference_sma_cross.toml"), 1);
    assert_eq!(
        format!("{:?}", from_parquet.ledger),
        format!("{:?}", from_csv.ledger)
    );
    assert_eq!(from_parquet.ledger.trades.len(), 33);
}

/// Parquet rows with a null ticker or a null time are quarantined with the file and what is
/// missing, not dropped by the ticker filter or read from the buffer under the null.
#[test]
fn parquet_rows_without_a_ticker_or_a_time_are_quarantined() {
    use std::sync::Arc;

    use arrow::array::{Float64Array, StringArray, TimestampSecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use arrow::record_batch::RecordBatch;
    let dir = tempfile::tempdir().expect("tempdir");
    let day = 86_400;
    let n = 40;
    let times: Vec<Option<i64>> = (0..n)
        .map(|i| {
            if i == 20 {
                None
            } else {
                Some(1_600_000_000 / day * day + i64::from(i) * day)
            }
        })
        .collect();
    let tickers: Vec<Option<&str>> = (0..n)
        .map(|i| if i == 30 { None } else { Some("AAA") })
        .collect();
    let price: Vec<f64> = (0..n).map(|i| 100.0 + f64::from(i % 7)).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("time", DataType::Timestamp(TimeUnit::Second, None), true),
        Field::new("ticker", DataType::Utf8, true),
        Field::new("open", DataType::Float64, false),
        Field::new("high", DataType::Float64, false),
        Field::new("low", DataType::Float64, false),
        Field::new("close", DataType::Float64, false),
        Field::new("volume", DataType::Float64, false),
    ]));
    let px = |d: f64| {
        Arc::new(Float64Array::from(
            price.iter().map(|p| p + d).collect::<Vec<_>>(),
        ))
    };
    let rb = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(TimestampSecondArray::from(times)),
            Arc::new(StringArray::from(tickers)),
            px(0.0),
            px(1.0),
            px(-1.0),
            px(0.0),
            px(1000.0),
        ],
    )
    .expect("batch");
    let file = std::fs::File::create(dir.path().join("bars.parquet")).expect("create");
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).expect("writer");
    w.write(&rb).expect("write");
    w.close().expect("close");
    let text = "name = \"pq\"\n[source]\nkind = \"files\"\nformat = \"parquet\"\npaths = [\"bars.parquet\"]\n[quality]\ncalendar = \"none\"\n[[features]]\nkind = \"sma\"\nperiod = 3\n[[features]]\nkind = \"sma\"\nperiod = 5\n[model]\nkind = \"crossover\"\nfast = \"SMA_3\"\nslow = \"SMA_5\"\n";
    let out = run_with(&crate::common::pipeline_text(text, dir.path()), 1);
    assert_eq!(
        out.ledger.bars, 38,
        "two rows of 40 lack a ticker or a time"
    );
    let details: Vec<&str> = out.quarantine.iter().map(|r| r.detail.as_str()).collect();
    assert!(
        details
            .iter()
            .any(|d| d.ends_with("bars.parquet: a row whose ticker is null")),
        "{details:?}"
    );
    assert!(
        details
            .iter()
            .any(|d| d.ends_with("bars.parquet: a row whose time is null")),
        "{details:?}"
    );
}
