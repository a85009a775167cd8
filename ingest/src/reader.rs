//! Reading records from files: JSON documents, JSON arrays, NDJSON, gzip, and Windows `.evtx`
//! event logs.
//!
//! The layout of each input is recognised from its content, not its name: gzip by its magic
//! bytes; NDJSON when the first line (or, if that one is broken, the second) is a complete
//! JSON object on its own; otherwise a stream of JSON documents (one pretty-printed document,
//! several concatenated ones, or an array). API envelopes are opened: a top-level array,
//! Security Hub's `{"Findings": [...]}`, Graph's and ARM's `{"value": [...]}` and EventBridge's
//! `{"detail": {"findings": [...]}}` yield their elements.
//!
//! Every record keeps its exact text as received (`raw`), so evidence can be traced to the
//! bytes the provider sent. A line or document that is not valid JSON is reported with its
//! position; in NDJSON the following lines are still read.

use std::io::{BufRead, BufReader, Read};

use std::collections::HashMap;

use flate2::read::MultiGzDecoder;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::json::Json;

/// A record as received: its parsed value and its exact text.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The parsed JSON.
    pub value: Value,
    /// The record's text exactly as it appeared in the input.
    pub raw: String,
}

/// A record as read from a file or a message: its exact text and its JSON, borrowed from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Document<'a> {
    /// The record's text exactly as it appeared in the input.
    pub raw: &'a str,
    /// The parsed JSON, whose strings borrow from `raw`.
    pub json: Json<'a>,
}

/// One record read from an input, or the reason it could not be read.
#[derive(Debug)]
pub struct RawRecord<'a> {
    /// `name:line` for NDJSON and documents, `name:line[index]` for elements of an envelope.
    pub location: String,
    /// The record, or why reading failed together with the offending bytes.
    pub value: Result<Document<'a>, (String, Vec<u8>)>,
}

/// Splits one JSON document's text into records, opening API envelopes (see the module docs).
/// Returns whether the document was an envelope, and its records.
pub fn split_document(text: &str) -> serde_json::Result<(bool, Vec<Document<'_>>)> {
    split(text.trim())
}

/// [`split_document`] without trimming: an NDJSON line keeps its leading whitespace in `raw`,
/// as it always has (record ids of events without one hash `raw`).
fn split(trimmed: &str) -> serde_json::Result<(bool, Vec<Document<'_>>)> {
    let json = Json::parse(trimmed)?;
    let Some(path) = envelope_keys(&json) else {
        return Ok((false, vec![Document { raw: trimmed, json }]));
    };
    // Each element keeps its own exact text, so the envelope is read again as raw slices.
    let mut list: &str = trimmed;
    for key in path {
        let map: HashMap<String, &RawValue> = serde_json::from_str(list)?;
        list = map.get(*key).map_or("[]", |v| v.get());
    }
    let elements: Vec<&RawValue> = serde_json::from_str(list)?;
    let records = elements
        .into_iter()
        .map(|r| {
            Ok(Document {
                raw: r.get(),
                json: Json::parse(r.get())?,
            })
        })
        .collect::<serde_json::Result<Vec<_>>>()?;
    Ok((true, records))
}

/// The keys leading from a document to its array of records, if it is an envelope.
fn envelope_keys(doc: &Json<'_>) -> Option<&'static [&'static str]> {
    let is_array = |keys: &[&str]| {
        doc.as_object()
            .and_then(|o| o.path(keys))
            .is_some_and(|v| v.as_array().is_some())
    };
    if doc.as_array().is_some() {
        Some(&[])
    } else if is_array(&["Findings"]) {
        Some(&["Findings"])
    } else if is_array(&["value"]) {
        Some(&["value"])
    } else if is_array(&["detail", "findings"]) {
        Some(&["detail", "findings"])
    } else {
        None
    }
}

/// The bytes every Windows event log file (`.evtx`) starts with.
pub const EVTX_MAGIC: &[u8] = b"ElfFile\0";

/// Reads every record of a Windows event log file (`.evtx`) with the `evtx` crate (the parser
/// chainsaw and hayabusa use) and hands each to `emit` as the JSON that crate renders
/// (`{"Event": {"System": …, "EventData": …}}`, the same shape `evtx_dump -o jsonl` writes),
/// in file order.
///
/// Locations are `name#EventRecordID`. A record that cannot be parsed is emitted as a failed
/// [`RawRecord`]; a file whose header is not an EVTX header is an error.
pub fn read_evtx<R: Read + std::io::Seek>(
    name: &str,
    input: R,
    mut emit: impl FnMut(RawRecord<'_>),
) -> Result<(), String> {
    // evtx is built without its `multithreading` feature: the caller parallelises over files,
    // and one thread per file keeps record order.
    let mut parser = evtx::EvtxParser::from_read_seek(input)
        .map_err(|e| format!("not a readable EVTX file: {e}"))?;
    for (index, record) in parser.records_json().enumerate() {
        match record {
            Ok(r) => emit(RawRecord {
                location: format!("{name}#{}", r.event_record_id),
                value: match Json::parse(&r.data) {
                    Ok(json) => Ok(Document { raw: &r.data, json }),
                    Err(e) => Err((
                        format!("evtx rendered invalid JSON: {e}"),
                        r.data.as_bytes().to_vec(),
                    )),
                },
            }),
            Err(e) => emit(RawRecord {
                location: format!("{name}[record {}]", index + 1),
                value: Err((format!("unreadable EVTX record: {e}"), Vec::new())),
            }),
        }
    }
    Ok(())
}

/// Wraps a reader in a gzip decoder when it starts with the gzip magic bytes.
pub fn maybe_gunzip<R: Read + 'static>(reader: R) -> std::io::Result<Box<dyn BufRead>> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let head = buffered.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::with_capacity(
            256 * 1024,
            MultiGzDecoder::new(buffered),
        )))
    } else {
        Ok(Box::new(buffered))
    }
}

/// Reads every record of one input and hands each to `emit`, in order.
///
/// `name` is used in locations. I/O errors end the input and are returned; malformed content
/// never is (it is emitted as a failed [`RawRecord`]).
pub fn read_records(
    name: &str,
    mut input: Box<dyn BufRead>,
    mut emit: impl FnMut(RawRecord<'_>),
) -> std::io::Result<()> {
    let mut first = Vec::new();
    let mut line_no = 0usize;
    // Skip leading blank lines, remembering where the content starts.
    loop {
        first.clear();
        if input.read_until(b'\n', &mut first)? == 0 {
            return Ok(());
        }
        line_no += 1;
        strip_bom(&mut first, line_no);
        if !first.iter().all(u8::is_ascii_whitespace) {
            break;
        }
    }
    let first_line = line_no;
    let is_object_line = |l: &[u8]| serde_json::from_slice::<Value>(l).is_ok_and(|v| v.is_object());

    // NDJSON if the first line is an object on its own; if the first line is broken, the
    // second decides, so one bad leading record does not cost the whole file.
    let mut second = Vec::new();
    let mut second_no = line_no;
    let first_trimmed = trim(&first);
    let ndjson = if is_object_line(&first) {
        true
    } else if first_trimmed.starts_with(b"{") && first_trimmed.ends_with(b"}") {
        loop {
            second.clear();
            if input.read_until(b'\n', &mut second)? == 0 {
                break;
            }
            second_no += 1;
            if !second.iter().all(u8::is_ascii_whitespace) {
                break;
            }
        }
        is_object_line(&second)
    } else {
        false
    };

    if ndjson {
        emit_line(name, line_no, &first, &mut emit);
        if !second.is_empty() {
            line_no = second_no;
            emit_line(name, line_no, &second, &mut emit);
        }
        let mut line = Vec::new();
        loop {
            line.clear();
            if input.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            line_no += 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            emit_line(name, line_no, &line, &mut emit);
        }
    }

    // One or more JSON documents spanning lines: read the rest and stream-parse it.
    let mut all = first;
    all.extend_from_slice(&second);
    input.read_to_end(&mut all)?;
    let text = match std::str::from_utf8(&all) {
        Ok(t) => t,
        Err(e) => {
            let line = first_line + count_newlines(&all[..e.valid_up_to()]);
            emit(RawRecord {
                location: format!("{name}:{line}"),
                value: Err((
                    format!(
                        "input is not UTF-8 (invalid byte at line {line}); the rest of this input could not be read"
                    ),
                    all[e.valid_up_to()..].to_vec(),
                )),
            });
            return Ok(());
        }
    };
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<&RawValue>();
    loop {
        let start = stream.byte_offset();
        // The stream stops right after a document; the next one starts past the whitespace.
        let gap = all[start..]
            .iter()
            .take_while(|b| b.is_ascii_whitespace())
            .count();
        let doc_line = first_line + count_newlines(&all[..start + gap]);
        match stream.next() {
            None => return Ok(()),
            Some(Ok(doc)) => emit_split(name, doc_line, doc.get(), &mut emit),
            Some(Err(e)) => {
                let line = first_line - 1 + e.line();
                emit(RawRecord {
                    location: format!("{name}:{line}"),
                    value: Err((
                        format!(
                            "invalid JSON at line {line}, column {}: {e}; the rest of this input could not be read",
                            e.column()
                        ),
                        all[start..].to_vec(),
                    )),
                });
                return Ok(());
            }
        }
    }
}

fn strip_bom(line: &mut Vec<u8>, line_no: usize) {
    if line_no == 1 && line.starts_with(&[0xEF, 0xBB, 0xBF]) {
        line.drain(..3);
    }
}

fn count_newlines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| **b == b'\n').count()
}

/// One NDJSON line: usually one record (parsed once, its text kept), sometimes an envelope.
fn emit_line(name: &str, line: usize, bytes: &[u8], emit: &mut impl FnMut(RawRecord<'_>)) {
    let text = match std::str::from_utf8(trim(bytes)) {
        Ok(t) => t,
        Err(e) => {
            return emit(RawRecord {
                location: format!("{name}:{line}"),
                value: Err((format!("line is not UTF-8: {e}"), trim(bytes).to_vec())),
            });
        }
    };
    emit_records(name, line, split(text), text, emit)
}

/// One document: its records (elements of an envelope are numbered).
fn emit_split(name: &str, line: usize, text: &str, emit: &mut impl FnMut(RawRecord<'_>)) {
    emit_records(name, line, split_document(text), text, emit)
}

fn emit_records<'a>(
    name: &str,
    line: usize,
    split: serde_json::Result<(bool, Vec<Document<'a>>)>,
    text: &str,
    emit: &mut impl FnMut(RawRecord<'a>),
) {
    match split {
        Err(e) => emit(RawRecord {
            location: format!("{name}:{line}"),
            value: Err((format!("invalid JSON: {e}"), text.as_bytes().to_vec())),
        }),
        Ok((envelope, records)) => {
            for (i, record) in records.into_iter().enumerate() {
                let location = if envelope {
                    format!("{name}:{line}[{i}]")
                } else {
                    format!("{name}:{line}")
                };
                emit(RawRecord {
                    location,
                    value: Ok(record),
                });
            }
        }
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read(bytes: &[u8]) -> Vec<(String, Result<Value, String>)> {
        let mut out = Vec::new();
        let input = maybe_gunzip(std::io::Cursor::new(bytes.to_vec())).expect("open");
        read_records("in", input, |r| {
            out.push((
                r.location,
                r.value
                    .map(|rec| rec.json.to_value())
                    .map_err(|(reason, _)| reason),
            ))
        })
        .expect("read");
        out
    }

    #[test]
    fn ndjson_keeps_reading_after_a_bad_line() {
        let out = read(b"{\"a\":1}\n\n{broken\n{\"a\":3}\n");
        let locations: Vec<_> = out.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(locations, ["in:1", "in:3", "in:4"]);
        assert!(
            out[1]
                .1
                .as_ref()
                .is_err_and(|e| e.starts_with("invalid JSON"))
        );
        assert_eq!(out[2].1.as_ref().ok(), Some(&serde_json::json!({"a": 3})));
    }

    #[test]
    fn arrays_envelopes_and_pretty_documents() {
        let out = read(b"[\n {\"a\":1},\n {\"a\":2}\n]\n");
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].0, "in:1[1]");
        let out = read(b"{\n \"Findings\": [{\"a\":1}, {\"a\":2}, {\"a\":3}]\n}\n");
        assert_eq!(out.len(), 3);
        let out = read(b"{\n \"a\": 1\n}\n{\n \"a\": 2\n}\n");
        let locations: Vec<_> = out.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(locations, ["in:1", "in:4"]);
    }

    #[test]
    fn a_broken_first_line_does_not_cost_the_ndjson_file() {
        let out = read(b"{\"a\": 1,}\n{\"a\":2}\n{\"a\":3}\n");
        let ok: Vec<_> = out
            .iter()
            .filter(|(_, v)| v.is_ok())
            .map(|(l, _)| l.as_str())
            .collect();
        assert_eq!(ok, ["in:2", "in:3"]);
        assert!(out[0].1.is_err());
    }

    #[test]
    fn records_keep_their_exact_text() {
        let input = b"{\"Findings\": [ {\"n\": 1.50,  \"s\": \"\\u00e9\"} ,{\"n\":2}]}";
        let mut raws = Vec::new();
        read_records(
            "in",
            maybe_gunzip(std::io::Cursor::new(input.to_vec())).expect("open"),
            |r| raws.push(r.value.expect("record").raw.to_string()),
        )
        .expect("read");
        assert_eq!(raws, ["{\"n\": 1.50,  \"s\": \"\\u00e9\"}", "{\"n\":2}"]);
    }

    #[test]
    fn truncated_document_is_reported_with_its_position() {
        let out = read(b"{\n \"a\": 1\n}\n{\n \"a\": \n");
        assert_eq!(out.len(), 2);
        let reason = out[1].1.as_ref().expect_err("second document is cut");
        assert!(reason.contains("line 6"), "{reason}");
    }

    #[test]
    fn gzip_is_recognised_by_content() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"a\":1}\n{\"a\":2}\n").expect("gzip");
        let out = read(&gz.finish().expect("gzip"));
        assert_eq!(out.len(), 2);
    }
}
