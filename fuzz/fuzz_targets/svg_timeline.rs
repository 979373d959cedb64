//! The check tool's SVG timeline: for the report of arbitrary bytes read as a WebM file, and for
//! a report made up from the input (any names, codec ids, times, problems), never a panic, and
//! always well-formed XML with the markup characters of every text escaped.
#![no_main]

use std::path::PathBuf;

use janus_recorder::check::{
    CheckOptions, FileReport, Problem, ProblemKind, SizeChange, Status, TrackReport, check_bytes,
    timeline,
};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let report = if mode & 1 == 0 {
        check_bytes(
            std::path::Path::new("fuzz.webm"),
            rest,
            &CheckOptions::default(),
        )
    } else {
        match made_up(&mut Unstructured::new(rest)) {
            Ok(r) => r,
            Err(_) => return,
        }
    };
    let svg = timeline::svg(&report);
    if let Err(e) = well_formed(&svg) {
        panic!("{e}\n{svg}");
    }
});

const KINDS: [ProblemKind; 6] = [
    ProblemKind::Gap,
    ProblemKind::Truncated,
    ProblemKind::DecodeError,
    ProblemKind::TimestampBackwards,
    ProblemKind::BadTimestamp,
    ProblemKind::CorruptData,
];

fn made_up(u: &mut Unstructured) -> Result<FileReport> {
    let mut tracks = Vec::new();
    for _ in 0..u.int_in_range(0..=4)? {
        tracks.push(TrackReport {
            number: u.arbitrary()?,
            kind: u.arbitrary()?,
            codec: u.arbitrary()?,
            codec_private_bytes: 0,
            frames: u.arbitrary()?,
            keyframes: 0,
            first_ms: u.arbitrary()?,
            last_ms: u.arbitrary()?,
            duration_ms: u.arbitrary()?,
            fps: u.arbitrary()?,
            bitrate_kbps: u.arbitrary()?,
            width: u.arbitrary()?,
            height: u.arbitrary()?,
            size_changes: vec![SizeChange {
                at_ms: u.arbitrary()?,
                width: u.arbitrary()?,
                height: u.arbitrary()?,
            }],
            size_change_count: 1,
            keyframe_ms: u.arbitrary()?,
            decoded_frames: u.arbitrary()?,
            decode_errors: 0,
            decoded_ms: u.arbitrary()?,
            silent_share: u.arbitrary()?,
        });
    }
    let mut problems = Vec::new();
    for _ in 0..u.int_in_range(0..=8)? {
        problems.push(Problem {
            kind: *u.choose(&KINDS)?,
            at_ms: u.arbitrary()?,
            track: u.arbitrary()?,
            message: u.arbitrary()?,
            length_ms: u.arbitrary()?,
        });
    }
    Ok(FileReport {
        file: PathBuf::from(u.arbitrary::<String>()?),
        playable: u.arbitrary()?,
        status: *u.choose(&[Status::Ok, Status::Problems, Status::Unreadable])?,
        duration_ms: u.arbitrary()?,
        playable_ms: u.arbitrary()?,
        bytes: u.arbitrary()?,
        finalized: u.arbitrary()?,
        tracks,
        av_offset_ms: u.arbitrary()?,
        av_duration_diff_ms: u.arbitrary()?,
        video_decoded: u.arbitrary()?,
        problems,
    })
}

/// Enough of XML 1.0 to catch unescaped text: nested, matching tags; quoted attribute values
/// without `<`; `&` only in the entities XML predefines; only characters XML allows.
fn well_formed(svg: &str) -> std::result::Result<(), String> {
    if let Some(c) = svg.chars().find(|&c| {
        !matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
    }) {
        return Err(format!("character {c:?} is not allowed in XML"));
    }
    let mut open: Vec<&str> = Vec::new();
    let mut rest = svg;
    while let Some(lt) = rest.find('<') {
        entities(&rest[..lt])?;
        let after = &rest[lt + 1..];
        let gt = after.find('>').ok_or("a tag is not closed")?;
        let tag = &after[..gt];
        rest = &after[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            if open.pop() != Some(name) {
                return Err(format!("</{name}> closes nothing open"));
            }
            continue;
        }
        let empty = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let (name, mut attrs) = tag.split_once(' ').unwrap_or((tag, ""));
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("bad tag name {name:?}"));
        }
        loop {
            attrs = attrs.trim_start();
            if attrs.is_empty() {
                break;
            }
            let (key, value) = attrs
                .split_once("=\"")
                .ok_or_else(|| format!("bad attribute in <{tag}>"))?;
            if !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':')
            {
                return Err(format!("bad attribute name {key:?}"));
            }
            let end = value.find('"').ok_or("an attribute value is not closed")?;
            entities(&value[..end])?;
            attrs = &value[end + 1..];
        }
        if !empty {
            open.push(name);
        }
    }
    entities(rest)?;
    if !open.is_empty() {
        return Err(format!("never closed: {open:?}"));
    }
    if !svg.starts_with("<svg ") {
        return Err("not an SVG".into());
    }
    Ok(())
}

/// Text between tags: no `<` (the caller splits on it) and `&` only starting an entity.
fn entities(text: &str) -> std::result::Result<(), String> {
    for (i, _) in text.match_indices('&') {
        let entity = &text[i..];
        if !["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
            .iter()
            .any(|e| entity.starts_with(e))
        {
            return Err(format!("raw & in {text:?}"));
        }
    }
    Ok(())
}
