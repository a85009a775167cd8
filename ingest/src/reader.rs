//! Reading JSON records from files: JSON documents, JSON arrays, NDJSON, gzip.
//!
//! The layout of each input is recognised from its content, not its name: gzip by its magic
//! bytes; NDJSON when the first line is a complete JSON value on its own; otherwise a stream
//! of JSON documents (one pretty-printed document, several concatenated ones, or an array).
//! API envelopes are opened with [`split_document`](crate::normalize::split_document).
//! A line or document that is not valid JSON is reported with its position; in NDJSON the
//! following lines are still read.

use std::io::{BufRead, BufReader, Read};

use flate2::read::MultiGzDecoder;
use serde_json::Value;

use crate::normalize::split_document;

/// One record read from an input, or the reason it could not be read.
#[derive(Debug)]
pub struct RawRecord {
    /// `name:line` for NDJSON and documents, `name:line[index]` for elements of an array.
    pub location: String,
    /// The parsed record, or why parsing failed together with the offending bytes.
    pub value: Result<Value, (String, Vec<u8>)>,
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
    mut emit: impl FnMut(RawRecord),
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

    if serde_json::from_slice::<Value>(&first).is_ok_and(|v| v.is_object()) {
        // NDJSON: every line is a record (or an envelope of records).
        emit_document(
            name,
            line_no,
            serde_json::from_slice(&first),
            &first,
            &mut emit,
        );
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
            emit_document(
                name,
                line_no,
                serde_json::from_slice(&line),
                &line,
                &mut emit,
            );
        }
    }

    // One or more JSON documents spanning lines: read the rest and stream-parse it.
    let mut all = first;
    input.read_to_end(&mut all)?;
    let mut stream = serde_json::Deserializer::from_slice(&all).into_iter::<Value>();
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
            Some(Ok(doc)) => {
                let end = stream.byte_offset();
                emit_document(name, doc_line, Ok(doc), &all[start..end], &mut emit);
            }
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

fn emit_document(
    name: &str,
    line: usize,
    parsed: serde_json::Result<Value>,
    bytes: &[u8],
    emit: &mut impl FnMut(RawRecord),
) {
    match parsed {
        Err(e) => emit(RawRecord {
            location: format!("{name}:{line}"),
            value: Err((format!("invalid JSON: {e}"), trim(bytes).to_vec())),
        }),
        Ok(doc) => {
            let is_container = doc.is_array()
                || doc.get("Findings").is_some_and(Value::is_array)
                || doc.get("value").is_some_and(Value::is_array)
                || doc.pointer("/detail/findings").is_some_and(Value::is_array);
            for (i, record) in split_document(doc).into_iter().enumerate() {
                let location = if is_container {
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
            out.push((r.location, r.value.map_err(|(reason, _)| reason)))
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
