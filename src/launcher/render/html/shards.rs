//! The page's per-shard section (Kinesis runs): acknowledged and throttled events per shard,
//! the most throttled first, so that a hot shard stands out at the top of the table.

use std::fmt::Write;

use super::escape::esc;
use crate::launcher::render::format::{thousands, trim};
use crate::model::report::{hot_shard, ShardCounts, Summary, THROTTLED_CODE};

/// Shards listed in full; the rest are summed in one line (a stream may have thousands).
const SHOWN: usize = 50;

/// The `Shards` section; nothing when the run has no per-shard counts (not Kinesis).
pub(super) fn shards(out: &mut String, s: &Summary) {
    if s.by_shard.is_empty() {
        return;
    }
    out.push_str("<section id=\"shards\"><h2>Shards</h2>\n");
    let mut rows: Vec<(&String, &ShardCounts)> = s.by_shard.iter().collect();
    rows.sort_by(|a, b| {
        b.1.throttled()
            .cmp(&a.1.throttled())
            .then(b.1.acknowledged.cmp(&a.1.acknowledged))
            .then(a.0.cmp(b.0))
    });
    let acked_total: u64 = rows.iter().map(|(_, c)| c.acknowledged).sum();
    let max_acked = rows
        .iter()
        .map(|(_, c)| c.acknowledged)
        .max()
        .unwrap_or(0)
        .max(1);
    let max_throttled = rows.iter().map(|(_, c)| c.throttled()).max().unwrap_or(0);
    match hot_shard(&s.by_shard) {
        Some((id, throttled, share)) => {
            let _ = writeln!(
                out,
                "<p class=\"bad\" id=\"hot-shard\">Hot shard: <code>{}</code> was throttled \
                 {} times, {}% of all throttling in this run.</p>",
                esc(id),
                thousands(throttled),
                trim(share * 100.0, 1),
            );
        }
        None => {
            out.push_str("<p class=\"empty ok\" id=\"no-throttling\">No shard was throttled.</p>\n")
        }
    }
    let _ = writeln!(
        out,
        "<p class=\"note\">What Kinesis answered, shard by shard, over {} shards: events \
         acknowledged, and throttled (<code>{THROTTLED_CODE}</code>, each retried or failed \
         attempt counted), the most throttled first. A shard takes at most 1,000 records or \
         1 MiB per second; keys that hash to one shard make it hot.</p>",
        thousands(rows.len() as u64),
    );
    out.push_str(
        "<table id=\"shards-table\"><thead><tr><th>shard</th><th class=\"num\">acknowledged</th>\
         <th class=\"num\">share</th><th></th><th class=\"num\">throttled</th><th></th>\
         <th class=\"num\">throttled share of attempts</th><th class=\"num\">other failures</th>\
         </tr></thead><tbody>",
    );
    for (id, c) in rows.iter().take(SHOWN) {
        let throttled = c.throttled();
        let other: u64 = c
            .failed_by_code
            .iter()
            .filter(|(code, _)| code.as_str() != THROTTLED_CODE)
            .map(|(_, n)| n)
            .sum();
        let attempts = c.acknowledged + throttled;
        let hot = throttled > 0 && throttled == max_throttled;
        let _ = write!(
            out,
            "<tr data-shard=\"{}\" data-acknowledged=\"{}\" data-throttled=\"{}\"{}>\
             <td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{}%</td>\
             <td class=\"barcell\">{}</td><td class=\"num{}\">{}</td><td class=\"barcell\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(id),
            c.acknowledged,
            throttled,
            if hot { " class=\"row-bad\"" } else { "" },
            esc(id),
            thousands(c.acknowledged),
            trim(pct(c.acknowledged, acked_total), 1),
            bar("ack", c.acknowledged, max_acked),
            if throttled > 0 { " bad" } else { "" },
            thousands(throttled),
            bar("thr", throttled, max_throttled),
            if attempts > 0 {
                format!("{}%", trim(pct(throttled, attempts), 1))
            } else {
                "—".into()
            },
            thousands(other),
        );
    }
    if rows.len() > SHOWN {
        let rest = &rows[SHOWN..];
        let _ = write!(
            out,
            "<tr class=\"muted\"><td>{} more shards</td><td class=\"num\">{}</td><td></td><td></td>\
             <td class=\"num\">{}</td><td></td><td></td><td></td></tr>",
            thousands(rest.len() as u64),
            thousands(rest.iter().map(|(_, c)| c.acknowledged).sum()),
            thousands(rest.iter().map(|(_, c)| c.throttled()).sum()),
        );
    }
    out.push_str("</tbody></table>\n</section>\n");
}

fn pct(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        100.0 * n as f64 / of as f64
    }
}

/// A bar of `value` against `max`, or nothing for 0: the bars keep a visible minimum width, so
/// that a shard throttled a few times still shows, and a bar at 0 would look like a few.
fn bar(class: &str, value: u64, max: u64) -> String {
    if value == 0 || max == 0 {
        return String::new();
    }
    format!(
        "<div class=\"bar {class}\" style=\"width:{:.1}%\"></div>",
        100.0 * value as f64 / max as f64
    )
}
