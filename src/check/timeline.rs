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
                let length = i64::try_from(p.length_ms.unwrap_or(0)).unwrap_or(i64::MAX);
                let _ = writeln!(
                    s,
                    r##"<rect class="gap" x="{:.1}" y="{y}" width="{:.1}" height="22" fill="#d9534f"><title>{}</title></rect>"##,
                    x(at),
                    (x(at.saturating_add(length)) - x(at)).max(2.0),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Problem, Status, TrackReport};

    /// A gap that ends past the last representable time: drawn, not an overflow.
    #[test]
    fn a_gap_to_the_end_of_time_is_drawn() {
        let track = TrackReport {
            number: 1,
            kind: "audio".into(),
            codec: "A_OPUS".into(),
            codec_private_bytes: 0,
            frames: 0,
            keyframes: 0,
            first_ms: None,
            last_ms: None,
            duration_ms: 0,
            fps: None,
            bitrate_kbps: None,
            width: None,
            height: None,
            size_changes: Vec::new(),
            size_change_count: 0,
            keyframe_ms: Vec::new(),
            decoded_frames: None,
            decode_errors: 0,
            decoded_ms: None,
            silent_share: None,
        };
        let report = FileReport {
            file: "a<b&c.webm".into(),
            playable: true,
            status: Status::Problems,
            duration_ms: Some(u64::MAX),
            playable_ms: None,
            bytes: 0,
            finalized: true,
            tracks: vec![track],
            av_offset_ms: None,
            av_duration_diff_ms: None,
            video_decoded: false,
            problems: vec![Problem {
                kind: ProblemKind::Gap,
                at_ms: Some(i64::MAX - 1),
                track: Some(1),
                message: "gap".into(),
                length_ms: Some(10),
            }],
        };
        let svg = svg(&report);
        assert!(svg.contains(r#"class="gap""#), "{svg}");
        assert!(svg.contains("a&lt;b&amp;c.webm"), "{svg}");
    }
}
