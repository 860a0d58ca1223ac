//! The terminal summary: the figures of each run (side by side when two are compared), what the
//! signals became, and one line per value of a sweep.

use super::{figures, money, opt, Report, RunReport};

fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n >= width {
        s.to_owned()
    } else {
        format!("{s}{}", " ".repeat(width - n))
    }
}

fn outcomes(run: &RunReport) -> String {
    let mut out = String::new();
    let s = &run.signals;
    if !s.refused_by.is_empty() {
        out.push_str("  refused by rule:   ");
        out.push_str(
            &s.refused_by
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        out.push('\n');
    }
    if !s.ignored_by.is_empty() {
        out.push_str("  ignored by filter: ");
        out.push_str(
            &s.ignored_by
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        out.push('\n');
    }
    if !run.orders.venue_rejections.is_empty() {
        out.push_str("  refused by the venue: ");
        out.push_str(
            &run.orders
                .venue_rejections
                .iter()
                .map(|(k, v)| format!("{k} ({v})"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        out.push('\n');
    }
    out
}

pub fn summary(report: &Report) -> String {
    let mut out = format!(
        "backtest: signals {}, prices {}{}\n",
        report.signals_source,
        report.prices_source,
        report
            .config
            .as_ref()
            .map(|c| format!(", config {c}"))
            .unwrap_or_default()
    );
    if let Some(sweep) = &report.sweep {
        out.push_str(&format!(
            "\nsweep of {}: one line per value\n{:>10} {:>7} {:>9} {:>14} {:>10} {:>9} {:>8} {:>8} {:>8}\n",
            sweep.key, "value", "trades", "win rate", "net PnL USD", "return %", "max DD %", "Sharpe", "PF", "ordered"
        ));
        for r in &sweep.rows {
            out.push_str(&format!(
                "{:>10} {:>7} {:>9} {:>14} {:>10} {:>9} {:>8} {:>8} {:>8}\n",
                r.value,
                r.trades,
                opt(r.win_rate_pct, 2),
                money(r.net_pnl, 2),
                money(r.total_return_pct, 2),
                money(r.max_drawdown_pct, 2),
                opt(r.sharpe, 2),
                opt(r.profit_factor, 2),
                r.signals_ordered
            ));
        }
        return out;
    }
    let columns: Vec<Vec<(&'static str, String)>> = report.runs.iter().map(figures).collect();
    let label_width = 30;
    let value_width = columns
        .iter()
        .flat_map(|c| c.iter().map(|(_, v)| v.chars().count()))
        .max()
        .unwrap_or(10)
        .min(60);
    if report.runs.len() > 1 {
        out.push('\n');
        out.push_str(&pad("", label_width));
        for run in &report.runs {
            out.push_str(&pad(&run.label, value_width + 2));
        }
        out.push('\n');
    } else {
        out.push('\n');
    }
    for (i, (label, _)) in columns[0].iter().enumerate() {
        out.push_str(&pad(label, label_width));
        for c in &columns {
            out.push_str(&pad(&c[i].1, value_width + 2));
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
    }
    for run in &report.runs {
        let details = outcomes(run);
        if !details.is_empty() {
            if report.runs.len() > 1 {
                out.push_str(&format!("{}:\n", run.label));
            }
            out.push_str(&details);
        }
    }
    out
}
