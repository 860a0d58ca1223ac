//! `--from` and `--to`: a point in time on the command line, as RFC 3339 or as a date (its
//! 00:00 UTC), for `backtest` and `events export`.

pub(super) fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    crate::venue::wire::parse_timestamp(s)
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
        })
        .ok_or_else(|| format!("{s:?} is neither RFC 3339 nor a date (YYYY-MM-DD)"))
}
