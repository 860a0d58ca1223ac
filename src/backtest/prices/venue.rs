//! `--prices venue`: one-minute candles from the venue's `GET /market/candles/{symbol}`, fetched
//! once and cached on disk, so a second backtest over the same span makes no request.
//!
//! The cache lives under `--cache-dir` (default `$XDG_CACHE_HOME/sigex/candles`, else
//! `~/.cache/sigex/candles`): `HOST[_PORT]/SYMBOL/1m/YYYY-MM-DD.csv`, one file per UTC day, in
//! the candles CSV format, its first line recording the span the venue was asked for
//! (`# sigex candles BTC/USD 1m from <RFC 3339> to <RFC 3339>`). A run that needs a span of a day
//! inside the recorded one reads the file; otherwise the union of both spans is fetched again and
//! the file replaced (written to a temporary file, then renamed).
//!
//! Requests ask for at most 1,000 bars (the venue's limit), one window of 1,000 minutes at a time.

use super::super::BacktestError;
use crate::venue::VenueClient;
use chrono::{DateTime, Duration, DurationRound, NaiveDate, Utc};
use std::path::{Path, PathBuf};

const INTERVAL: &str = "1m";
const WINDOW_MINUTES: i64 = 1000;

/// The default cache directory.
pub fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("sigex").join("candles")
}

/// The cache files holding `symbol` from `from` to `to`, fetching what the cache lacks.
/// Returns the day files in order.
pub async fn cached_candles(
    venue: &VenueClient,
    base_url: &str,
    cache_dir: &Path,
    symbol: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<PathBuf>, BacktestError> {
    let host = reqwest::Url::parse(base_url)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}_{p}"),
                None => h.to_owned(),
            })
        })
        .unwrap_or_else(|| "venue".into());
    let dir = cache_dir
        .join(host)
        .join(symbol.replace('/', "-"))
        .join(INTERVAL);
    std::fs::create_dir_all(&dir).map_err(|e| BacktestError::io(&dir, e))?;
    let from = from.duration_trunc(Duration::minutes(1)).unwrap_or(from);
    let mut files = Vec::new();
    let mut day = from.date_naive();
    while day <= to.date_naive() {
        let day_start = day.and_time(chrono::NaiveTime::MIN).and_utc();
        let day_end = day_start + Duration::days(1) - Duration::milliseconds(1);
        let want = (from.max(day_start), to.min(day_end));
        let path = dir.join(format!("{day}.csv"));
        let held = read_span(&path)?;
        if !held.is_some_and(|(a, b)| a <= want.0 && b >= want.1) {
            let span = match held {
                Some((a, b)) => (a.min(want.0), b.max(want.1)),
                None => want,
            };
            fetch_day(venue, symbol, &path, day, span).await?;
        }
        files.push(path);
        day = day.succ_opt().unwrap_or(day);
        if day == NaiveDate::MAX {
            break;
        }
    }
    Ok(files)
}

/// A span of time, both ends included.
type Span = (DateTime<Utc>, DateTime<Utc>);

/// The span a cache file records, if the file exists and says it.
fn read_span(path: &Path) -> Result<Option<Span>, BacktestError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BacktestError::io(path, e)),
    };
    let first = text.lines().next().unwrap_or_default();
    let mut words = first.split_whitespace().skip_while(|w| *w != "from");
    let (Some(_), Some(a), Some(_), Some(b)) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Ok(None);
    };
    Ok(crate::venue::wire::parse_timestamp(a).zip(crate::venue::wire::parse_timestamp(b)))
}

async fn fetch_day(
    venue: &VenueClient,
    symbol: &str,
    path: &Path,
    day: NaiveDate,
    (from, to): Span,
) -> Result<(), BacktestError> {
    // The span at full precision: a later run compares its own span with it.
    let exact = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut out = format!(
        "# sigex candles {symbol} {INTERVAL} from {} to {} ({day})\ntimestamp,open,high,low,close,volume\n",
        exact(from),
        exact(to)
    );
    let mut start = from;
    let mut last: Option<DateTime<Utc>> = None;
    while start <= to {
        let end = (start + Duration::minutes(WINDOW_MINUTES) - Duration::milliseconds(1)).min(to);
        let bars = venue
            .candles(
                symbol,
                INTERVAL,
                start.timestamp_millis(),
                end.timestamp_millis(),
                WINDOW_MINUTES as usize,
            )
            .await
            .map_err(|e| {
                BacktestError::Other(format!(
                    "fetching {symbol} candles {} to {} from the venue: {e}",
                    crate::clock::ts(start),
                    crate::clock::ts(end)
                ))
            })?;
        for b in bars {
            let at = crate::venue::wire::parse_timestamp(&b.timestamp).ok_or_else(|| {
                BacktestError::Other(format!(
                    "the venue's {symbol} candle timestamp {:?} is not RFC 3339",
                    b.timestamp
                ))
            })?;
            // Only this window's bars, each once, in order.
            if at < start || at > end || last.is_some_and(|l| at <= l) {
                continue;
            }
            last = Some(at);
            out.push_str(&format!(
                "{},{},{},{},{},{}\n",
                crate::clock::ts(at),
                b.open,
                b.high,
                b.low,
                b.close,
                b.volume
            ));
        }
        start = end + Duration::milliseconds(1);
    }
    super::super::report::write_atomically(path, out.as_bytes())
}
