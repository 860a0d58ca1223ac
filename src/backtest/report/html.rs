//! `report.html`: one self-contained page (inline CSS, inline SVG; no script, no font or image
//! fetched), readable offline and printable.

use super::{figures, money, opt, Report, RunReport};
use crate::backtest::metrics::BreakdownRow;
use rust_decimal::Decimal;
use std::fmt::Write;

/// At most this many trades, signals and orders are listed in the page (the JSON has them all).
const HTML_ROWS: usize = 500;

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;\
color:#1b2430;background:#fbfcfd}h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;\
border-bottom:1px solid #d8dee6;padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}\
.muted{color:#66707c}table{border-collapse:collapse;margin:6px 0 12px}\
td,th{border:1px solid #d8dee6;padding:3px 8px;text-align:left;vertical-align:top}\
th{background:#eef2f6;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.pos{color:#0a7d35}.neg{color:#b3261e}svg{background:#fff;border:1px solid #d8dee6}\
.charts{display:flex;flex-wrap:wrap;gap:16px}.note{font-size:12px;color:#66707c}";

fn class_of(d: Decimal) -> &'static str {
    if d > Decimal::ZERO {
        "n pos"
    } else if d < Decimal::ZERO {
        "n neg"
    } else {
        "n"
    }
}

/// A line chart of `values` over time, in an SVG of `w` x `h`; `fill_below_zero` draws an area
/// from the top line (for drawdowns, shown downwards).
fn chart(id: &str, title: &str, points: &[(i64, Decimal)], w: i64, h: i64, area: bool) -> String {
    let mut out = format!(
        "<svg id=\"{id}\" role=\"img\" aria-label=\"{}\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" xmlns=\"http://www.w3.org/2000/svg\">",
        esc(title)
    );
    let (left, right, top, bottom) = (70i64, 10i64, 22i64, 24i64);
    let _ = write!(
        out,
        "<text x=\"{left}\" y=\"15\" font-size=\"12\" fill=\"#1b2430\">{}</text>",
        esc(title)
    );
    if points.len() < 2 {
        let _ = write!(
            out,
            "<text x=\"{left}\" y=\"{}\" font-size=\"12\" fill=\"#66707c\">not enough points</text></svg>",
            h / 2
        );
        return out;
    }
    let (t0, t1) = (points[0].0, points[points.len() - 1].0);
    let mut lo = points.iter().map(|p| p.1).min().unwrap_or_default();
    let mut hi = points.iter().map(|p| p.1).max().unwrap_or_default();
    if area {
        hi = hi.max(Decimal::ZERO);
        lo = lo.min(Decimal::ZERO);
    }
    if hi == lo {
        hi += Decimal::ONE;
        lo -= Decimal::ONE;
    }
    let pw = Decimal::from(w - left - right);
    let ph = Decimal::from(h - top - bottom);
    let span = Decimal::from((t1 - t0).max(1));
    let x = |t: i64| Decimal::from(left) + Decimal::from(t - t0) / span * pw;
    let y = |v: Decimal| Decimal::from(top) + (hi - v) / (hi - lo) * ph;
    let coord = |d: Decimal| d.round_dp(1).normalize().to_string();
    let mut d = String::new();
    for (k, (t, v)) in points.iter().enumerate() {
        let _ = write!(
            d,
            "{}{},{} ",
            if k == 0 { "M" } else { "L" },
            coord(x(*t)),
            coord(y(*v))
        );
    }
    if area {
        let _ = write!(
            d,
            "L{},{} L{},{} Z",
            coord(x(t1)),
            coord(y(Decimal::ZERO)),
            coord(x(t0)),
            coord(y(Decimal::ZERO))
        );
        let _ = write!(
            out,
            "<path d=\"{}\" fill=\"#f3c7c3\" stroke=\"#b3261e\" stroke-width=\"1\"/>",
            d.trim_end()
        );
    } else {
        let _ = write!(
            out,
            "<path d=\"{}\" fill=\"none\" stroke=\"#1f5fbf\" stroke-width=\"1.5\"/>",
            d.trim_end()
        );
    }
    for (v, label) in [(hi, money(hi, 2)), (lo, money(lo, 2))] {
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\" fill=\"#66707c\">{}</text>",
            left - 4,
            coord(y(v) + Decimal::from(4)),
            esc(&label)
        );
    }
    let date = |t: i64| {
        chrono::DateTime::from_timestamp_millis(t)
            .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default()
    };
    let _ = write!(
        out,
        "<text x=\"{left}\" y=\"{}\" font-size=\"11\" fill=\"#66707c\">{}</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\" fill=\"#66707c\">{}</text></svg>",
        h - 6,
        date(t0),
        w - right,
        h - 6,
        date(t1)
    );
    out
}

fn charts(run: &RunReport, out: &mut String) {
    let points = &run.equity;
    let equity: Vec<(i64, Decimal)> = points
        .iter()
        .map(|p| (p.time.timestamp_millis(), p.equity))
        .collect();
    let drawdown: Vec<(i64, Decimal)> = points
        .iter()
        .map(|p| (p.time.timestamp_millis(), -p.drawdown_pct))
        .collect();
    out.push_str("<div class=\"charts\">");
    out.push_str(&chart(
        "equity-chart",
        "Equity (USD)",
        &equity,
        920,
        280,
        false,
    ));
    out.push_str(&chart(
        "drawdown-chart",
        "Drawdown below the running peak (%)",
        &drawdown,
        920,
        180,
        true,
    ));
    out.push_str("</div>");
}

fn table(out: &mut String, head: &[&str], rows: impl IntoIterator<Item = Vec<String>>) {
    out.push_str("<table><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            // Cells are already escaped; numbers carry their own class.
            out.push_str(&cell);
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
}

fn td(s: &str) -> String {
    format!("<td>{}</td>", esc(s))
}

fn num(d: Decimal, dp: u32) -> String {
    format!("<td class=\"{}\">{}</td>", class_of(d), esc(&money(d, dp)))
}

fn num_opt(d: Option<Decimal>, dp: u32) -> String {
    match d {
        Some(d) => num(d, dp),
        None => "<td class=\"n\">n/a</td>".into(),
    }
}

fn count(n: u64) -> String {
    format!("<td class=\"n\">{n}</td>")
}

fn breakdown(out: &mut String, title: &str, rows: &[BreakdownRow]) {
    if rows.is_empty() {
        return;
    }
    let _ = write!(out, "<h3>{}</h3>", esc(title));
    table(
        out,
        &[
            "",
            "signals",
            "ordered",
            "refused",
            "ignored",
            "trades",
            "wins",
            "losses",
            "win rate %",
            "net PnL USD",
            "avg net USD",
            "profit factor",
        ],
        rows.iter().map(|r| {
            vec![
                td(&r.key),
                count(r.signals.signals),
                count(r.signals.ordered),
                count(r.signals.refused),
                count(r.signals.ignored),
                count(r.trades.trades),
                count(r.trades.wins),
                count(r.trades.losses),
                num_opt(r.trades.win_rate_pct, 2),
                num(r.trades.net_pnl, 2),
                num_opt(r.trades.avg_net_pnl, 2),
                num_opt(r.trades.profit_factor, 2),
            ]
        }),
    );
}

fn run_details(run: &RunReport, out: &mut String) {
    let s = &run.signals;
    out.push_str("<h2>Signals</h2>");
    let _ = write!(
        out,
        "<p>{} signals: {} ordered, {} refused, {} ignored{}.</p>",
        s.total,
        s.ordered,
        s.refused,
        s.ignored,
        if s.before_from > 0 {
            format!(" ({} more before --from, not traded)", s.before_from)
        } else {
            String::new()
        }
    );
    let mut outcome_rows: Vec<Vec<String>> = Vec::new();
    for (k, v) in &s.refused_by {
        outcome_rows.push(vec![td("refused"), td(k), count(*v)]);
    }
    for (k, v) in &s.ignored_by {
        outcome_rows.push(vec![td("ignored"), td(k), count(*v)]);
    }
    for (k, v) in &run.orders.venue_rejections {
        outcome_rows.push(vec![td("refused by the venue"), td(k), count(*v)]);
    }
    if !outcome_rows.is_empty() {
        table(out, &["outcome", "rule or filter", "signals"], outcome_rows);
    }
    out.push_str("<h2>Breakdowns</h2>");
    let b = &run.breakdowns;
    breakdown(out, "Per strategy", &b.strategy);
    breakdown(out, "Per symbol", &b.symbol);
    breakdown(out, "Per confidence band", &b.confidence_band);
    breakdown(out, "Per risk level", &b.risk_level);
    breakdown(out, "Per time horizon", &b.time_horizon);
    breakdown(out, "Per exit", &b.exit_reason);
    if !run.monthly.is_empty() {
        out.push_str("<h3>Per month</h3>");
        table(
            out,
            &["month", "PnL USD", "return %", "trades", "wins"],
            run.monthly.iter().map(|m| {
                vec![
                    td(&m.month),
                    num(m.pnl, 2),
                    num(m.return_pct, 2),
                    count(m.trades),
                    count(m.wins),
                ]
            }),
        );
    }
    if !run.state_changes.is_empty() {
        out.push_str("<h2>Trading state changes</h2>");
        table(
            out,
            &["at", "scope", "state", "set by", "reason"],
            run.state_changes.iter().take(HTML_ROWS).map(|c| {
                vec![
                    td(&c.at),
                    td(&c.scope),
                    td(c.state),
                    td(c.set_by),
                    td(&c.reason),
                ]
            }),
        );
    }
    let trade_rows = |trades: &[crate::backtest::collect::Trade]| {
        trades
            .iter()
            .take(HTML_ROWS)
            .map(|t| {
                vec![
                    td(&t.opened_at),
                    td(&t.closed_at),
                    td(&t.symbol),
                    td(&t.strategy),
                    td(t.side),
                    num(t.quantity, 8),
                    num(t.entry_price, 2),
                    num(t.exit_price, 2),
                    num(t.fees, 4),
                    num(t.net_pnl, 2),
                    num(t.return_pct, 2),
                    td(t.exit),
                    td(&t.confidence.map(|c| c.to_string()).unwrap_or_default()),
                ]
            })
            .collect::<Vec<_>>()
    };
    let trade_head = [
        "opened",
        "closed",
        "symbol",
        "strategy",
        "side",
        "quantity",
        "entry",
        "exit",
        "fees",
        "net PnL USD",
        "return %",
        "exit by",
        "confidence",
    ];
    if !run.open_positions.is_empty() {
        out.push_str("<h2>Open at the end (marked at the mid)</h2>");
        table(out, &trade_head, trade_rows(&run.open_positions));
    }
    let _ = write!(out, "<h2>Trades ({})</h2>", run.trades.len());
    if run.trades.len() > HTML_ROWS {
        let _ = write!(
            out,
            "<p class=\"note\">The first {HTML_ROWS} are listed; report.json has all of them.</p>"
        );
    }
    table(out, &trade_head, trade_rows(&run.trades));
    if run.decisions.is_none() {
        out.push_str(
            "<p class=\"note\">More than 10,000 signals: they are counted above, not listed.</p>",
        );
    }
    if let Some(decisions) = &run.decisions {
        let _ = write!(out, "<h2>Signal decisions ({})</h2>", decisions.len());
        if decisions.len() > HTML_ROWS {
            let _ = write!(
                out,
                "<p class=\"note\">The first {HTML_ROWS} are listed; report.json has all of them.</p>"
            );
        }
        table(
            out,
            &[
                "at",
                "symbol",
                "strategy",
                "signal",
                "outcome",
                "rule",
                "reason",
                "clientOrderId",
            ],
            decisions.iter().take(HTML_ROWS).map(|d| {
                vec![
                    td(&d.at),
                    td(&d.symbol),
                    td(&d.strategy),
                    td(&format!("{} {}", d.recommendation, d.confidence)),
                    td(d.outcome),
                    td(d.rule.unwrap_or("")),
                    td(&d.reason),
                    td(d.client_order_id.as_deref().unwrap_or("")),
                ]
            }),
        );
    }
    if let Some(orders) = &run.order_list {
        let _ = write!(out, "<h2>Orders ({})</h2>", orders.len());
        table(
            out,
            &[
                "created",
                "clientOrderId",
                "symbol",
                "side",
                "type",
                "role",
                "quantity",
                "status",
                "filled",
                "avg price",
                "fees",
            ],
            orders.iter().take(HTML_ROWS).map(|o| {
                vec![
                    td(&o.created_at),
                    td(&o.client_order_id),
                    td(&o.symbol),
                    td(o.side),
                    td(o.order_type),
                    td(o.role),
                    num(o.quantity, 8),
                    td(&match &o.rejected {
                        Some(r) => format!("{} ({r})", o.status),
                        None => o.status.to_owned(),
                    }),
                    num(o.filled_quantity, 8),
                    num_opt(o.average_price, 2),
                    num(o.fees, 4),
                ]
            }),
        );
    }
    let rec = &run.recorded;
    out.push_str("<h2>What was replayed</h2><p>");
    let _ = write!(
        out,
        "Replayed: {}. Not replayed (the recorded account's own events, which the simulated \
         account replaces; duplicates): {}.</p>",
        esc(&join(rec.replayed.iter().map(|(k, v)| format!("{k} {v}")))),
        esc(&join(rec.skipped.iter().map(|(k, v)| format!("{k} {v}"))))
    );
    if !rec.dead_letters.is_empty() {
        out.push_str(
            "<p>Dead letters (signed but unusable; no effect, as in the live bot):</p><ul>",
        );
        for d in &rec.dead_letters {
            let _ = write!(out, "<li>{}</li>", esc(d));
        }
        out.push_str("</ul>");
    }
    table(
        out,
        &["symbol", "prices", "at the start", "at the end"],
        run.prices.iter().map(|p| {
            vec![
                td(&p.symbol),
                td(&p.source),
                num_opt(p.first, 2),
                num_opt(p.last, 2),
            ]
        }),
    );
}

fn join(items: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = items.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

pub fn render(report: &Report) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let title = match report.kind {
        "compare" => "sigex backtest: comparison",
        "sweep" => "sigex backtest: sweep",
        _ => "sigex backtest",
    };
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>{STYLE}</style></head><body><h1>{title}</h1><p class=\"muted\">signals {}; \
         prices {}{}</p>",
        esc(&report.signals_source),
        esc(&report.prices_source),
        report
            .config
            .as_ref()
            .map(|c| format!("; config {}", esc(c)))
            .unwrap_or_default()
    );
    if let Some(sweep) = &report.sweep {
        let _ = write!(out, "<h2>Sweep of {}</h2>", esc(&sweep.key));
        table(
            &mut out,
            &[
                "value",
                "trades",
                "win rate %",
                "net PnL USD",
                "return %",
                "max drawdown %",
                "Sharpe",
                "profit factor",
                "signals ordered",
            ],
            sweep.rows.iter().map(|r| {
                vec![
                    td(&r.value),
                    count(r.trades),
                    num_opt(r.win_rate_pct, 2),
                    num(r.net_pnl, 2),
                    num(r.total_return_pct, 2),
                    num(r.max_drawdown_pct, 2),
                    num_opt(r.sharpe, 2),
                    num_opt(r.profit_factor, 2),
                    count(r.signals_ordered),
                ]
            }),
        );
    }
    out.push_str("<h2>Summary</h2>");
    let columns: Vec<Vec<(&'static str, String)>> = report.runs.iter().map(figures).collect();
    let mut head = vec![""];
    head.extend(report.runs.iter().map(|r| r.label.as_str()));
    if let Some(first) = columns.first() {
        table(
            &mut out,
            &head,
            (0..first.len()).map(|i| {
                let mut row = vec![format!("<th>{}</th>", esc(first[i].0))];
                row.extend(columns.iter().map(|c| td(&c[i].1)));
                row
            }),
        );
    }
    for run in &report.runs {
        if report.runs.len() > 1 {
            let _ = write!(out, "<h2>{}</h2>", esc(&run.label));
        }
        charts(run, &mut out);
        if report.sweep.is_none() {
            run_details(run, &mut out);
        } else {
            let _ = write!(
                out,
                "<p class=\"note\">{} trades, net {} USD, Sharpe {}.</p>",
                run.summary.trades,
                esc(&money(run.summary.net_pnl, 2)),
                esc(&opt(run.summary.sharpe, 2))
            );
        }
    }
    out.push_str(
        "<p class=\"note\">Figures are defined in the README, section \"Backtest a strategy\".</p>\
         </body></html>\n",
    );
    out
}
