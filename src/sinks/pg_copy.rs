//! PostgreSQL's binary `COPY` for the `bars` table: the rows encoded straight from their columns
//! into COPY's binary format (no per-row parameter objects), copied into `bars` itself, or, when
//! some were recorded before (COPY cannot skip them; a restarted run has them), into a
//! per-transaction staging table moved into `bars` with `ON CONFLICT DO NOTHING`.
//! [`super::postgres::write_bars`] uses it for batches of at least [`COPY_FROM_ROWS`] bars and
//! `UNNEST` below: `fdp bench pg` measures both.

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::SinkExt;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::postgres::{DbError, StoredBar, bars_transaction};

/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00:00 UTC).
const PG_EPOCH: i64 = 946_684_800;

/// The smallest batch written with COPY. Copied straight into `bars`, new bars go faster than
/// by one `INSERT … UNNEST` at every size `fdp bench pg` measures (2026-12-07: 135–147 k rows/s
/// against 79–104 k at 100 a batch, 332–346 k against 173–193 k at 2,000); below 100 both
/// take the same round trips.
pub const COPY_FROM_ROWS: usize = 100;

/// Binary COPY's file header: signature, flags, header-extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

fn text(buf: &mut BytesMut, s: &str) -> Result<(), DbError> {
    let n = i32::try_from(s.len()).map_err(|_| DbError::Corrupt {
        what: format!("a text of {} bytes for COPY", s.len()),
    })?;
    buf.put_i32(n);
    buf.put_slice(s.as_bytes());
    Ok(())
}

fn float8(buf: &mut BytesMut, x: f64) {
    buf.put_i32(8);
    buf.put_f64(x);
}

/// The rows in COPY's binary format, in `bars`' column order.
///
/// # Errors
/// A time PostgreSQL's `timestamptz` cannot hold (beyond ±292,000 years of 2000).
pub fn encode_bars(run_id: &str, bars: &[StoredBar]) -> Result<BytesMut, DbError> {
    let mut buf = BytesMut::with_capacity(HEADER.len() + 2 + bars.len() * (2 + 9 * 4 + 8 * 6 + 40));
    buf.put_slice(HEADER);
    for b in bars {
        buf.put_i16(9);
        text(&mut buf, run_id)?;
        text(&mut buf, &b.ticker)?;
        let micros = b
            .bar
            .ts
            .checked_sub(PG_EPOCH)
            .and_then(|s| s.checked_mul(1_000_000))
            .ok_or_else(|| DbError::Corrupt {
                what: format!("bar time {} is out of timestamptz's range", b.bar.ts),
            })?;
        buf.put_i32(8);
        buf.put_i64(micros);
        for x in [b.bar.open, b.bar.high, b.bar.low, b.bar.close, b.bar.volume] {
            float8(&mut buf, x);
        }
        text(&mut buf, &b.stream_id)?;
    }
    buf.put_i16(-1);
    Ok(buf)
}

/// Records `bars` of `run_id` through binary COPY; a bar recorded before stays as it was.
/// Returns the rows new to `bars`.
///
/// The first try copies straight into `bars`, the usual case of bars read for the first time, at
/// about half the server's cost of the staged copy. When a bar is there already (a restarted
/// run re-reading its pending messages, a redelivery, a message sent twice), that copy fails
/// whole on the primary key and rolls back; the bars then go through the staging table, whose
/// `ON CONFLICT DO NOTHING` keeps what was recorded first.
///
/// # Errors
/// A failing statement or copy, or a time out of range.
pub async fn write_bars_copy(
    client: &mut Client,
    run_id: &str,
    bars: &[StoredBar],
) -> Result<u64, DbError> {
    if bars.is_empty() {
        return Ok(0);
    }
    let data = encode_bars(run_id, bars)?.freeze();
    match copy_straight(client, data.clone()).await {
        Err(DbError::Postgres(e)) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            tracing::debug!(
                bars = bars.len(),
                "bars recorded before: copying through staging"
            );
            copy_staged(client, data).await
        }
        r => r,
    }
}

/// Copies the rows into `bars` itself: fails on any bar recorded before.
async fn copy_straight(client: &mut Client, data: Bytes) -> Result<u64, DbError> {
    let tx = bars_transaction(client).await?;
    let sink = tx.copy_in("COPY bars FROM STDIN (FORMAT binary)").await?;
    futures_util::pin_mut!(sink);
    sink.send(data).await?;
    let n = sink.finish().await?;
    tx.commit().await?;
    Ok(n)
}

/// Copies the rows into a staging table and moves the new ones into `bars`.
async fn copy_staged(client: &mut Client, data: Bytes) -> Result<u64, DbError> {
    let tx = bars_transaction(client).await?;
    tx.batch_execute(
        "CREATE TEMP TABLE IF NOT EXISTS bars_copy_in (LIKE bars) ON COMMIT DELETE ROWS",
    )
    .await?;
    let sink = tx
        .copy_in("COPY bars_copy_in FROM STDIN (FORMAT binary)")
        .await?;
    futures_util::pin_mut!(sink);
    sink.send(data).await?;
    sink.finish().await?;
    let n = tx
        .execute(
            "INSERT INTO bars SELECT * FROM bars_copy_in ON CONFLICT DO NOTHING",
            &[],
        )
        .await?;
    tx.commit().await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bar::Bar;

    #[test]
    fn encoding_follows_the_binary_copy_format() {
        let bar = Bar {
            ticker: 0,
            ts: PG_EPOCH + 1,
            open: 1.5,
            high: 2.0,
            low: 1.0,
            close: 1.25,
            volume: 0.0,
        };
        let rows = [StoredBar {
            ticker: "BRK.B".into(),
            bar,
            stream_id: "1-0".into(),
        }];
        let buf = encode_bars("r", &rows).unwrap();
        assert_eq!(&buf[..11], b"PGCOPY\n\xff\r\n\0");
        assert_eq!(&buf[19..21], &9i16.to_be_bytes());
        // run_id "r", ticker "BRK.B", then the time: one second after PostgreSQL's epoch.
        let at = 21 + 4 + 1 + 4 + 5;
        assert_eq!(&buf[at..at + 4], &8i32.to_be_bytes());
        assert_eq!(&buf[at + 4..at + 12], &1_000_000i64.to_be_bytes());
        assert_eq!(&buf[buf.len() - 2..], &(-1i16).to_be_bytes());
        let far = StoredBar {
            bar: Bar {
                ts: i64::MAX,
                ..bar
            },
            ..rows[0].clone()
        };
        assert!(encode_bars("r", &[far]).is_err());
    }
}
