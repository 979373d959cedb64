//! A picture of one recording: a lane per track, gaps in red, keyframes as ticks, problems
//! as markers with their message on hover.

use std::fmt::Write as _;

use super::report::{FileReport, ProblemKind, clock, printable};

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 140.0;
const LANE: f64 = 34.0;
const TOP: f64 = 40.0;

/// The SVG text for `report`.
pub fn svg(report: &FileReport) -> String {
    let total = report
        .duration_ms
        .or(report.playable_ms)
        .unwrap_or(0)
        .max(1) as f64;
    let x = |ms: i64| LEFT + (ms.max(0) as f64 / total) * (WIDTH - LEFT - 20.0);
    let height = TOP + LANE * (report.tracks.len() as f64 + 1.0) + 30.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="20" font-weight="bold">{} — {:?}, {}</text>"#,
        escape(&report.file.display().to_string()),
        report.status,
        clock(total as i64)
    );
    for (i, t) in report.tracks.iter().enumerate() {
        let y = TOP + LANE * i as f64;
        let _ = writeln!(
            s,
            r#"<g class="lane"><text x="10" y="{}">{} {} ({})</text>"#,
            y + 16.0,
            escape(&t.kind),
            t.number,
            escape(&t.codec)
        );
        if let (Some(first), Some(last)) = (t.first_ms, t.last_ms) {
            let _ = writeln!(
                s,
                r##"<rect x="{:.1}" y="{y}" width="{:.1}" height="22" fill="#7bb274"/>"##,
                x(first),
                (x(last) - x(first)).max(1.0)
            );
        }
        for &k in &t.keyframe_ms {
            let _ = writeln!(
                s,
                r##"<line class="keyframe" x1="{0:.1}" x2="{0:.1}" y1="{y}" y2="{1}" stroke="#1f4e79" stroke-width="1.5"/>"##,
                x(k),
                y + 22.0
            );
        }
        for p in &report.problems {
            if p.track == Some(t.number)
                && p.kind == ProblemKind::Gap
                && let Some(at) = p.at_ms
            {
                let length = p.length_ms.unwrap_or(0) as i64;
                let _ = writeln!(
                    s,
                    r##"<rect class="gap" x="{:.1}" y="{y}" width="{:.1}" height="22" fill="#d9534f"><title>{}</title></rect>"##,
                    x(at),
                    (x(at + length) - x(at)).max(2.0),
                    escape(&p.message)
                );
            }
        }
        let _ = writeln!(s, "</g>");
    }
    let y = TOP + LANE * report.tracks.len() as f64;
    let _ = writeln!(s, r#"<text x="10" y="{}">problems</text>"#, y + 16.0);
    for p in &report.problems {
        let at = p.at_ms.unwrap_or(0);
        let _ = writeln!(
            s,
            r##"<circle class="problem" cx="{:.1}" cy="{}" r="5" fill="#f0ad4e"><title>{} {:?}: {}</title></circle>"##,
            x(at),
            y + 11.0,
            clock(at),
            p.kind,
            escape(&p.message)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="{}">0:00</text><text x="{}" y="{}" text-anchor="end">{}</text>"#,
        height - 10.0,
        WIDTH - 20.0,
        height - 10.0,
        clock(total as i64)
    );
    s.push_str("</svg>\n");
    s
}

/// Text for XML: no control characters (most are not allowed in XML at all) and the markup
/// characters escaped.
fn escape(text: &str) -> String {
    printable(text)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
