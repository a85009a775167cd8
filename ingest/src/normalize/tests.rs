//! Golden tests: every fixture in `testdata/normalize/` is read, normalized, built into an
//! Arrow batch and rendered one row per block; the result must equal the checked-in
//! `.golden` file beside it. `CAIRN_UPDATE_GOLDEN=1` rewrites the golden files after a
//! deliberate mapping change (review the diff).

use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::reader::{maybe_gunzip, read_records};
use crate::schema::to_record_batch;

use super::normalize;

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/normalize")
}

/// Renders every column but `raw` (which is the input itself) as `column: value` lines.
fn render(batch: &RecordBatch, locations: &[String], errors: &[String]) -> String {
    let options = FormatOptions::default().with_null("∅");
    let formatters: Vec<_> = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formatter"))
        .collect();
    let schema = batch.schema();
    let mut out = String::new();
    for (row, location) in locations.iter().enumerate().take(batch.num_rows()) {
        out.push_str(&format!("## {location}\n"));
        for (i, field) in schema.fields().iter().enumerate() {
            if field.name() == "raw" || field.name() == "ingested_at" {
                continue;
            }
            if field.name() == "fields" {
                // One entry per line keeps golden diffs readable.
                let entries = batch.column(i).as_map().value(row);
                let keys = entries.column(0).as_string::<i32>();
                let values = entries.column(1).as_string::<i32>();
                for e in 0..keys.len() {
                    out.push_str(&format!("fields.{} {}\n", keys.value(e), values.value(e)));
                }
                continue;
            }
            out.push_str(&format!(
                "{:<20} {}\n",
                field.name(),
                formatters[i].value(row)
            ));
        }
        out.push('\n');
    }
    for e in errors {
        out.push_str(&format!("## dead letter\n{e}\n\n"));
    }
    out
}

fn check(fixture: &Path) -> Option<String> {
    let name = fixture.file_name()?.to_str()?.to_string();
    let input =
        maybe_gunzip(std::fs::File::open(fixture).expect("open fixture")).expect("read fixture");
    let (mut findings, mut locations, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    read_records(&name, input, |r| {
        match r
            .value
            .map_err(|(e, _)| e)
            .and_then(|rec| normalize(&rec.value, &rec.raw).map_err(|e| e.to_string()))
        {
            Ok(f) => {
                findings.push(f);
                locations.push(r.location);
            }
            Err(e) => errors.push(format!("{}: {e}", r.location)),
        }
    })
    .expect("read fixture");
    let batch = to_record_batch(&findings).expect("batch");
    let actual = render(&batch, &locations, &errors);
    let golden = fixture.with_extension("golden");
    if std::env::var_os("CAIRN_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &actual).expect("write golden");
        return None;
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    (expected != actual).then(|| {
        let first_diff = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .map(|i| {
                format!(
                    "line {}:\n  expected: {}\n  actual:   {}",
                    i + 1,
                    expected.lines().nth(i).unwrap_or_default(),
                    actual.lines().nth(i).unwrap_or_default()
                )
            })
            .unwrap_or_else(|| "lengths differ".into());
        format!(
            "{} differs from {}; first difference at {first_diff}",
            name,
            golden.display()
        )
    })
}

#[test]
fn normalizers_match_golden_files() {
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(testdata())
        .expect("testdata/normalize exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json" || e == "jsonl"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 6, "fixtures missing: {fixtures:?}");
    let failures: Vec<String> = fixtures.iter().filter_map(|f| check(f)).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
