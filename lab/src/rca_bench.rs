//! `rca-bench`: runs the root-cause localisation on a Squeeze-layout benchmark directory (one
//! folder per setting, `<ts>.csv` cases, `injection_info.csv` ground truth) and scores it the
//! way the papers do. The IO shell around [`storepulse_collector_core::rca`].

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Serialize;
use storepulse_collector_core::rca::{self, Cube, KpiKind, Params};

/// Published F1 of RiskLoc (public code, default parameters) per setting on the 45 cases of
/// the benchmark README, by (layer, n_ele).
const RISKLOC_PER_SETTING: [((u32, u32), f64); 9] = [
    ((1, 1), 1.0),
    ((1, 2), 1.0),
    ((1, 3), 1.0),
    ((2, 1), 1.0),
    ((2, 2), 1.0),
    ((2, 3), 0.897),
    ((3, 1), 0.889),
    ((3, 2), 0.947),
    ((3, 3), 0.889),
];

/// Published overall F1 (and seconds per case) on the same 45 cases.
const PUBLISHED_OVERALL: [(&str, f64, f64); 6] = [
    ("RiskLoc", 0.954, 0.37),
    ("Squeeze", 0.949, 5.8),
    ("AutoRoot", 0.886, 0.25),
    ("HotSpot", 0.548, 9.6),
    ("Adtributor", 0.161, 0.07),
    ("R-Adtributor", 0.089, 0.16),
];

/// True positives, false positives and false negatives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Predicted causes equal to a true cause.
    pub tp: u64,
    /// Predicted causes that are not a true cause.
    pub fp: u64,
    /// True causes not predicted.
    #[serde(rename = "fn")]
    pub fn_: u64,
}

/// Scores of one setting (or of the whole dataset).
#[derive(Debug, Clone, Serialize)]
pub struct SettingReport {
    /// Folder name, or `overall`.
    pub name: String,
    /// Cases run (those with a data file).
    pub cases: usize,
    /// Summed counts.
    pub counts: Counts,
    /// F1 = 2TP / (2TP + FP + FN).
    pub f1: f64,
    /// Mean wall-clock seconds of localisation per case (file load excluded).
    pub secs_per_case: f64,
    /// Published RiskLoc F1 for this setting, when known.
    pub riskloc_f1: Option<f64>,
}

/// One case's outcome, for debugging.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    /// Setting folder.
    pub setting: String,
    /// Case timestamp.
    pub timestamp: String,
    /// Ground truth, canonical.
    pub truth: Vec<String>,
    /// Predictions, canonical.
    pub predicted: Vec<String>,
    /// Counts of this case.
    pub counts: Counts,
    /// Localisation seconds.
    pub secs: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// One entry per setting, in folder order.
    pub settings: Vec<SettingReport>,
    /// All settings together.
    pub overall: SettingReport,
    /// Every case.
    pub cases: Vec<CaseReport>,
}

/// A benchmark case loaded in memory.
#[derive(Debug)]
pub struct Case {
    /// The leaves.
    pub cube: Cube,
    /// Ground-truth causes, canonical and deduplicated.
    pub truth: BTreeSet<String>,
}

impl Counts {
    /// F1 = 2TP / (2TP + FP + FN); 1.0 when there was nothing to find and nothing was found.
    pub fn f1(&self) -> f64 {
        let den = 2 * self.tp + self.fp + self.fn_;
        if den == 0 {
            1.0
        } else {
            2.0 * self.tp as f64 / den as f64
        }
    }

    fn add(&mut self, o: Counts) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.fn_ += o.fn_;
    }
}

/// Canonical form of one cause: its `attr=value` pairs sorted and joined with `&`.
pub fn canonical_cause(pairs: &str) -> String {
    let mut parts: Vec<&str> = pairs
        .split('&')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    parts.sort_unstable();
    parts.join("&")
}

/// Parses a ground-truth `set` (`b=b10&c=c4;a=a2`) into canonical, deduplicated causes.
pub fn parse_truth(set: &str) -> BTreeSet<String> {
    set.split(';')
        .map(canonical_cause)
        .filter(|c| !c.is_empty())
        .collect()
}

/// Scores one case as the papers do: exact match is a TP; anything else predicted is an FP
/// (a parent or child of a true cause included), every true cause not predicted an FN.
/// Duplicates on either side count once.
pub fn score_case(predicted: &BTreeSet<String>, truth: &BTreeSet<String>) -> Counts {
    let tp = predicted.intersection(truth).count() as u64;
    Counts {
        tp,
        fp: predicted.len() as u64 - tp,
        fn_: truth.len() as u64 - tp,
    }
}

/// The canonical strings of localised causes.
pub fn canonical_predictions(cube: &Cube, causes: &[rca::RootCause]) -> BTreeSet<String> {
    causes
        .iter()
        .map(|c| {
            let pairs: Vec<String> = c
                .labels(cube)
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            canonical_cause(&pairs.join("&"))
        })
        .collect()
}

/// Loads one case file (`real,predict,<attr>...`) into an additive cube.
pub fn load_case_file(path: &Path) -> anyhow::Result<Cube> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .context("empty case file")?
        .split(',')
        .map(str::trim)
        .collect();
    let real_col = column(&header, "real")?;
    let predict_col = column(&header, "predict")?;
    let attr_cols: Vec<usize> = (0..header.len())
        .filter(|&i| i != real_col && i != predict_col)
        .collect();
    let names: Vec<&str> = attr_cols.iter().map(|&i| header[i]).collect();
    let mut cube = Cube::new(&names, KpiKind::Additive);
    let mut ids = vec![0u32; attr_cols.len()];
    for (n, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != header.len() {
            bail!(
                "{}: line {} has {} fields",
                path.display(),
                n + 2,
                fields.len()
            );
        }
        let real: f64 = fields[real_col]
            .parse()
            .with_context(|| format!("{}: line {}: real", path.display(), n + 2))?;
        let predict: f64 = fields[predict_col]
            .parse()
            .with_context(|| format!("{}: line {}: predict", path.display(), n + 2))?;
        for (dim, &col) in attr_cols.iter().enumerate() {
            ids[dim] = cube.intern(dim, fields[col])?;
        }
        cube.push_additive(&ids, real, predict)
            .with_context(|| format!("{}: line {}", path.display(), n + 2))?;
    }
    Ok(cube)
}

/// Loads the cases of one setting folder that have a data file, with their ground truth,
/// ordered by timestamp.
pub fn load_setting(dir: &Path) -> anyhow::Result<Vec<(String, Case)>> {
    let info = dir.join("injection_info.csv");
    let text = fs::read_to_string(&info).with_context(|| format!("reading {}", info.display()))?;
    let mut rows = csv_rows(&text);
    let header = rows.next().context("empty injection_info.csv")?;
    let set_col = column_owned(&header, "set")?;
    let ts_col = column_owned(&header, "timestamp")?;
    let mut cases = Vec::new();
    for row in rows {
        let (Some(set), Some(ts)) = (row.get(set_col), row.get(ts_col)) else {
            continue;
        };
        let file = dir.join(format!("{ts}.csv"));
        if !file.is_file() {
            continue;
        }
        let cube = load_case_file(&file)?;
        cases.push((
            ts.clone(),
            Case {
                cube,
                truth: parse_truth(set),
            },
        ));
    }
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(cases)
}

/// Runs the benchmark over every setting folder of `data`.
pub fn run(data: &Path, params: &Params) -> anyhow::Result<BenchReport> {
    let mut dirs: Vec<_> = fs::read_dir(data)
        .with_context(|| format!("reading {}", data.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("injection_info.csv").is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        bail!(
            "no setting folder with injection_info.csv in {}",
            data.display()
        );
    }
    let mut settings = Vec::new();
    let mut cases_out = Vec::new();
    let mut total = Counts::default();
    let (mut total_secs, mut total_cases) = (0.0, 0usize);
    for dir in dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let cases = load_setting(&dir)?;
        let mut counts = Counts::default();
        let mut secs = 0.0;
        for (ts, case) in &cases {
            let start = Instant::now();
            let causes = rca::localize(&case.cube, params)?;
            let elapsed = start.elapsed().as_secs_f64();
            let predicted = canonical_predictions(&case.cube, &causes);
            let c = score_case(&predicted, &case.truth);
            counts.add(c);
            secs += elapsed;
            cases_out.push(CaseReport {
                setting: name.clone(),
                timestamp: ts.clone(),
                truth: case.truth.iter().cloned().collect(),
                predicted: predicted.into_iter().collect(),
                counts: c,
                secs: elapsed,
            });
        }
        total.add(counts);
        total_secs += secs;
        total_cases += cases.len();
        settings.push(SettingReport {
            riskloc_f1: setting_key(&name).and_then(riskloc_f1),
            name,
            cases: cases.len(),
            counts,
            f1: counts.f1(),
            secs_per_case: secs / cases.len().max(1) as f64,
        });
    }
    let overall = SettingReport {
        name: "overall".into(),
        cases: total_cases,
        counts: total,
        f1: total.f1(),
        secs_per_case: total_secs / total_cases.max(1) as f64,
        riskloc_f1: Some(PUBLISHED_OVERALL[0].1),
    };
    Ok(BenchReport {
        settings,
        overall,
        cases: cases_out,
    })
}

/// The report as a text table.
pub fn render_text(report: &BenchReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<28} {:>5} {:>4} {:>4} {:>4} {:>7} {:>10} {:>12} {:>7}",
        "setting", "cases", "TP", "FP", "FN", "F1", "s/case", "RiskLoc F1", "beats"
    );
    for r in report
        .settings
        .iter()
        .chain(std::iter::once(&report.overall))
    {
        let (reference, beats) = match r.riskloc_f1 {
            Some(f) => (
                format!("{f:.3}"),
                if r.f1 > f {
                    "yes"
                } else if (r.f1 - f).abs() < 1e-12 {
                    "tie"
                } else {
                    "NO"
                },
            ),
            None => ("-".to_owned(), "-"),
        };
        let _ = writeln!(
            s,
            "{:<28} {:>5} {:>4} {:>4} {:>4} {:>7.3} {:>10.5} {:>12} {:>7}",
            r.name,
            r.cases,
            r.counts.tp,
            r.counts.fp,
            r.counts.fn_,
            r.f1,
            r.secs_per_case,
            reference,
            beats
        );
    }
    let _ = writeln!(s, "\npublished on these 45 cases (F1, s/case):");
    for (name, f1, secs) in PUBLISHED_OVERALL {
        let _ = writeln!(s, "  {name:<14} {f1:.3}  {secs}");
    }
    let _ = writeln!(
        s,
        "  {:<14} {:.3}  {:.5}  (this run)",
        "storepulse", report.overall.f1, report.overall.secs_per_case
    );
    let misses: Vec<&CaseReport> = report
        .cases
        .iter()
        .filter(|c| c.counts.fp + c.counts.fn_ > 0)
        .collect();
    if !misses.is_empty() {
        let _ = writeln!(s, "\ncases with errors:");
        for c in misses {
            let _ = writeln!(
                s,
                "  {} {}: truth {:?} predicted {:?}",
                c.setting, c.timestamp, c.truth, c.predicted
            );
        }
    }
    s
}

/// The report as JSON, with the published reference figures.
pub fn render_json(report: &BenchReport) -> serde_json::Value {
    let published: Vec<serde_json::Value> = PUBLISHED_OVERALL
        .iter()
        .map(
            |(name, f1, secs)| serde_json::json!({"method": name, "f1": f1, "secs_per_case": secs}),
        )
        .collect();
    serde_json::json!({
        "settings": report.settings,
        "overall": report.overall,
        "published_overall": published,
        "cases": report.cases,
    })
}

fn setting_key(name: &str) -> Option<(u32, u32)> {
    let rest = name.strip_prefix("B_cuboid_layer_")?;
    let (layer, n) = rest.split_once("_n_ele_")?;
    Some((layer.parse().ok()?, n.parse().ok()?))
}

fn riskloc_f1(key: (u32, u32)) -> Option<f64> {
    RISKLOC_PER_SETTING
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, f)| *f)
}

fn column(header: &[&str], name: &str) -> anyhow::Result<usize> {
    header
        .iter()
        .position(|h| *h == name)
        .with_context(|| format!("no `{name}` column"))
}

fn column_owned(header: &[String], name: &str) -> anyhow::Result<usize> {
    header
        .iter()
        .position(|h| h == name)
        .with_context(|| format!("no `{name}` column"))
}

/// Rows of a simple CSV (fields may be double-quoted; no embedded newlines).
fn csv_rows(text: &str) -> impl Iterator<Item = Vec<String>> + '_ {
    text.lines().filter(|l| !l.trim().is_empty()).map(|line| {
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        let mut chars = line.chars().peekable();
        while let Some(ch) = chars.next() {
            match ch {
                '"' if quoted && chars.peek() == Some(&'"') => {
                    cur.push('"');
                    chars.next();
                }
                '"' => quoted = !quoted,
                ',' if !quoted => fields.push(std::mem::take(&mut cur).trim().to_owned()),
                _ => cur.push(ch),
            }
        }
        fields.push(cur.trim().to_owned());
        fields
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| canonical_cause(s)).collect()
    }

    #[test]
    fn exact_match_is_a_true_positive_in_any_order() {
        let c = score_case(&set(&["c=c4&b=b10"]), &parse_truth("b=b10&c=c4"));
        assert_eq!(
            c,
            Counts {
                tp: 1,
                fp: 0,
                fn_: 0
            }
        );
        assert_eq!(c.f1(), 1.0);
    }

    #[test]
    fn parent_or_child_is_one_fp_and_one_fn() {
        let truth = parse_truth("a=a2&b=b12");
        assert_eq!(
            score_case(&set(&["a=a2"]), &truth),
            Counts {
                tp: 0,
                fp: 1,
                fn_: 1
            }
        );
        assert_eq!(
            score_case(&set(&["a=a2&b=b12&c=c1"]), &truth),
            Counts {
                tp: 0,
                fp: 1,
                fn_: 1
            }
        );
    }

    #[test]
    fn duplicate_causes_count_once() {
        let truth = parse_truth("a=a6;d=d2;a=a6");
        assert_eq!(truth.len(), 2);
        let c = score_case(&set(&["a=a6", "d=d2", "a=a6"]), &truth);
        assert_eq!(
            c,
            Counts {
                tp: 2,
                fp: 0,
                fn_: 0
            }
        );
    }

    #[test]
    fn f1_sums_over_cases() {
        let mut total = Counts::default();
        total.add(Counts {
            tp: 2,
            fp: 0,
            fn_: 0,
        });
        total.add(Counts {
            tp: 0,
            fp: 1,
            fn_: 1,
        });
        assert!((total.f1() - 4.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn setting_names_parse() {
        assert_eq!(setting_key("B_cuboid_layer_3_n_ele_2"), Some((3, 2)));
        assert_eq!(riskloc_f1((2, 3)), Some(0.897));
        assert_eq!(setting_key("other"), None);
    }

    #[test]
    fn quoted_csv_fields() {
        let rows: Vec<Vec<String>> = csv_rows("a,b\n\"x,y\",2\n").collect();
        assert_eq!(rows[1], vec!["x,y".to_owned(), "2".to_owned()]);
    }
}
