//! Sector exposure agrees with the ledger: after the last fill, each
//! sector's open positions and value at entry prices are those of the trades still open.

use std::collections::BTreeMap;

use crate::common::{pipeline, repo, run_with};

#[test]
fn the_last_exposure_of_each_sector_matches_the_open_trades() {
    let out = run_with(&pipeline("sample.toml"), 2);
    assert!(!out.exposure.is_empty());
    let members =
        findashpro::sources::universe::members(&repo("data/sample/universe_sp500_2018-04-02.csv"))
            .expect("universe");
    let sector_of: BTreeMap<String, String> = members
        .into_iter()
        .filter_map(|m| Some((m.ticker, m.sector?)))
        .collect();
    let mut want: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for t in out.ledger.trades.iter().filter(|t| t.open) {
        let sector = sector_of
            .get(out.tickers.name(t.ticker))
            .cloned()
            .unwrap_or_else(|| "unknown".into());
        let e = want.entry(sector).or_default();
        e.0 += (t.size * t.entry_price * 100.0).round() as i64;
        e.1 += 1;
    }
    let mut last: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for r in &out.exposure {
        last.insert(r.sector.clone(), (r.cost_cents, r.positions));
    }
    last.retain(|_, v| v.1 != 0 || v.0 != 0);
    assert_eq!(last, want);
    // Ordered by time, and one row per sector and time.
    assert!(
        out.exposure
            .windows(2)
            .all(|w| (w[0].ts, &w[0].sector) < (w[1].ts, &w[1].sector))
    );
}
