//! The SigmaHQ Windows rule set shipped in the binary (`hunt/sigma/`, DRL 1.1).

use std::io::{BufRead, BufReader};

use cairn_rules::sigma::SigmaText;

use crate::HuntError;

static BUNDLED: &[u8] = include_bytes!("../sigma/sigmahq-windows.jsonl.gz");

#[derive(serde::Deserialize)]
struct Entry {
    path: String,
    text: String,
}

/// The bundled rules, as `builtin:rules/windows/…` texts in path order.
pub fn sigmahq_windows() -> Result<Vec<SigmaText>, HuntError> {
    let reader = BufReader::new(flate2::read::GzDecoder::new(BUNDLED));
    let mut out = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| HuntError::Bundled(format!("line {}: {e}", n + 1)))?;
        let e: Entry = serde_json::from_str(&line)
            .map_err(|e| HuntError::Bundled(format!("line {}: {e}", n + 1)))?;
        out.push(SigmaText {
            origin: format!("builtin:{}", e.path),
            text: e.text,
        });
    }
    Ok(out)
}
