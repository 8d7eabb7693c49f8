//! `rca-bench`: runs the root-cause localisation on benchmark directories and scores it the
//! way the papers do. The IO shell around [`storepulse_collector_core::rca`].
//!
//! Layouts: a Squeeze-style dataset (B0) has one folder per setting, each with `<ts>.csv`
//! cases and an `injection_info.csv`; a flat dataset (S, L, RS) has the `injection_info.csv`
//! and the cases in the dataset folder itself. A case is an additive KPI (`<ts>.csv`:
//! `real,predict,<attributes>`) or, when `<ts>.a.csv` (numerator) and `<ts>.b.csv`
//! (denominator) exist, a ratio KPI. A case that cannot be read (malformed or negative counts,
//! a non-numeric field) is reported with its error and skipped; the run goes on.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Serialize;
use storepulse_collector_core::rca::{self, Cube, KpiKind, Params, RatioSample};

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

/// Published overall F1 (and seconds per case) on the same 45 B0 cases.
const PUBLISHED_OVERALL: [(&str, f64, f64); 6] = [
    ("RiskLoc", 0.954, 0.37),
    ("Squeeze", 0.949, 5.8),
    ("AutoRoot", 0.886, 0.25),
    ("HotSpot", 0.548, 9.6),
    ("Adtributor", 0.161, 0.07),
    ("R-Adtributor", 0.089, 0.16),
];

/// Reference F1 of other methods on the other datasets, from the benchmark README (runs of
/// the public RiskLoc code on 1,000-case sets of the same kind; RS: all 135 cases).
const PUBLISHED_OTHER: [(&str, &str); 3] = [
    (
        "S",
        "RiskLoc 0.634, AutoRoot 0.456 (1,000-case set of this kind)",
    ),
    (
        "L",
        "RiskLoc 0.698, AutoRoot 0.546, Squeeze 0.295 (1,000-case set of this kind)",
    ),
    (
        "RS",
        "RobustSpot 0.415, Adtributor 0.274, AutoRoot 0.261, RiskLoc 0.025 (all 135 cases)",
    ),
];

/// Width of a noise band in the per-noise table (forecast noise level as the dataset states
/// it).
const NOISE_BAND: f64 = 0.05;

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
    /// Cases run (those with a data file that could be read).
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

/// Scores of one slice of the cases (a cause depth, a number of causes, a noise band).
#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    /// What the slice is (`depth 3`, `2 causes`, `noise 0.10-0.15`).
    pub name: String,
    /// Cases in the slice (for a depth: cases with a true or predicted cause of that depth).
    pub cases: usize,
    /// Summed counts.
    pub counts: Counts,
    /// F1 of the slice.
    pub f1: f64,
    /// Mean seconds per case of the slice (for a depth: not meaningful, 0).
    pub secs_per_case: f64,
}

/// One case's outcome, for debugging.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    /// Setting folder (or the dataset's name for a flat dataset).
    pub setting: String,
    /// Case timestamp (id).
    pub timestamp: String,
    /// Ground truth, canonical.
    pub truth: Vec<String>,
    /// Predictions, canonical.
    pub predicted: Vec<String>,
    /// Counts of this case.
    pub counts: Counts,
    /// Localisation seconds.
    pub secs: f64,
    /// Forecast noise level the dataset states for the case, if any.
    pub noise_level: Option<f64>,
    /// Bounds the search met (empty when it searched everything).
    pub limits: Vec<String>,
    /// Leaves with a negative observed value (kept).
    pub negative_leaves: usize,
    /// Each predicted cause in the order found, with its penalised score and the factor its
    /// KPI moved by (observed over expected).
    pub found: Vec<(String, f64, f64)>,
    /// The noise model fitted: absolute part `gamma`, count-like part `beta` and relative
    /// part `alpha`.
    pub noise: (f64, f64, f64),
}

/// A case that could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedCase {
    /// Setting folder.
    pub setting: String,
    /// Case timestamp (id).
    pub timestamp: String,
    /// Why.
    pub error: String,
}

/// The run over one dataset.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// The dataset folder's name.
    pub dataset: String,
    /// One entry per setting, in folder order.
    pub settings: Vec<SettingReport>,
    /// By the number of attributes of a cause (true causes for TP and FN, predicted ones for
    /// FP).
    pub by_depth: Vec<GroupReport>,
    /// By the number of true causes of a case.
    pub by_causes: Vec<GroupReport>,
    /// By the forecast noise band, where the dataset states a noise level.
    pub by_noise: Vec<GroupReport>,
    /// All settings together.
    pub overall: SettingReport,
    /// Cases that could not be read, with the reason.
    pub skipped: Vec<SkippedCase>,
    /// Cases where the search met a bound.
    pub bounded: usize,
    /// Every case run.
    pub cases: Vec<CaseReport>,
}

/// A benchmark case loaded in memory.
#[derive(Debug)]
pub struct Case {
    /// The leaves.
    pub cube: Cube,
    /// Ground-truth causes, canonical and deduplicated.
    pub truth: BTreeSet<String>,
    /// Forecast noise level stated in `injection_info.csv`, if the column exists.
    pub noise_level: Option<f64>,
}

/// One case of a setting: loaded, or the reason it could not be.
#[derive(Debug)]
pub struct LoadedCase {
    /// Case timestamp (id).
    pub timestamp: String,
    /// The case, or the error that skips it.
    pub case: Result<Case, String>,
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

/// Number of attributes of a canonical cause.
fn depth(cause: &str) -> usize {
    cause.split('&').count()
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

/// One measure file: attribute names, and per leaf its labels, `real` and `predict`.
struct MeasureFile {
    names: Vec<String>,
    rows: Vec<(Vec<String>, f64, f64)>,
}

fn read_measure_file(path: &Path) -> anyhow::Result<MeasureFile> {
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
    let names: Vec<String> = attr_cols.iter().map(|&i| header[i].to_owned()).collect();
    let mut rows = Vec::new();
    for (n, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != header.len() {
            bail!(
                "{}: line {} has {} fields, the header {}",
                path.display(),
                n + 2,
                fields.len(),
                header.len()
            );
        }
        let number = |col: usize, what: &str| -> anyhow::Result<f64> {
            let v: f64 = fields[col].parse().with_context(|| {
                format!(
                    "{}: line {}: {what} {:?}",
                    path.display(),
                    n + 2,
                    fields[col]
                )
            })?;
            if !v.is_finite() {
                bail!("{}: line {}: {what} is not finite", path.display(), n + 2);
            }
            Ok(v)
        };
        let real = number(real_col, "real")?;
        let predict = number(predict_col, "predict")?;
        let labels = attr_cols.iter().map(|&i| fields[i].to_owned()).collect();
        rows.push((labels, real, predict));
    }
    Ok(MeasureFile { names, rows })
}

/// Loads one case file (`real,predict,<attr>...`) into an additive cube. A negative observed
/// value is kept (see [`Cube::push_additive`]); a negative forecast is an error.
pub fn load_case_file(path: &Path) -> anyhow::Result<Cube> {
    let file = read_measure_file(path)?;
    let mut cube = Cube::new(&file.names, KpiKind::Additive);
    for (n, (labels, real, predict)) in file.rows.iter().enumerate() {
        cube.push_additive_labels(labels, *real, *predict)
            .with_context(|| format!("{}: row {}", path.display(), n + 1))?;
    }
    Ok(cube)
}

/// Loads a ratio case: numerator leaves from `num` and denominator leaves from `den`, joined
/// on their labels (a leaf missing on one side counts 0 there).
pub fn load_ratio_case(num: &Path, den: &Path) -> anyhow::Result<Cube> {
    let a = read_measure_file(num)?;
    let b = read_measure_file(den)?;
    if a.names != b.names {
        bail!(
            "{} and {} have different attributes",
            num.display(),
            den.display()
        );
    }
    let mut leaves: BTreeMap<Vec<String>, RatioSample> = BTreeMap::new();
    let zero = RatioSample {
        num_real: 0.0,
        num_predict: 0.0,
        den_real: 0.0,
        den_predict: 0.0,
    };
    for (labels, real, predict) in a.rows {
        let s = leaves.entry(labels).or_insert(zero);
        s.num_real += real;
        s.num_predict += predict;
    }
    for (labels, real, predict) in b.rows {
        let s = leaves.entry(labels).or_insert(zero);
        s.den_real += real;
        s.den_predict += predict;
    }
    let mut cube = Cube::new(&a.names, KpiKind::Ratio);
    for (labels, sample) in leaves {
        cube.push_ratio_labels(&labels, sample)
            .with_context(|| format!("{}: leaf {}", num.display(), labels.join(",")))?;
    }
    Ok(cube)
}

/// Loads one case of `dir`: a ratio case when `<ts>.a.csv` and `<ts>.b.csv` exist, else
/// `<ts>.csv`; `None` when there is no data file.
fn load_case(dir: &Path, ts: &str) -> Option<anyhow::Result<Cube>> {
    let (num, den) = (
        dir.join(format!("{ts}.a.csv")),
        dir.join(format!("{ts}.b.csv")),
    );
    if num.is_file() && den.is_file() {
        return Some(load_ratio_case(&num, &den));
    }
    let file = dir.join(format!("{ts}.csv"));
    file.is_file().then(|| load_case_file(&file))
}

/// Loads the cases of one setting folder that have a data file, with their ground truth,
/// ordered by timestamp. A case that cannot be read carries its error.
pub fn load_setting(dir: &Path) -> anyhow::Result<Vec<LoadedCase>> {
    let info = dir.join("injection_info.csv");
    let text = fs::read_to_string(&info).with_context(|| format!("reading {}", info.display()))?;
    let mut rows = csv_rows(&text);
    let header = rows.next().context("empty injection_info.csv")?;
    let set_col = column_owned(&header, "set")?;
    let ts_col = column_owned(&header, "timestamp")?;
    let noise_col = column_owned(&header, "noise_level").ok();
    let mut cases = Vec::new();
    for row in rows {
        let (Some(set), Some(ts)) = (row.get(set_col), row.get(ts_col)) else {
            continue;
        };
        let Some(cube) = load_case(dir, ts) else {
            continue;
        };
        let noise_level = noise_col
            .and_then(|c| row.get(c))
            .and_then(|v| v.parse::<f64>().ok());
        cases.push(LoadedCase {
            timestamp: ts.clone(),
            case: cube.map_err(|e| format!("{e:#}")).map(|cube| Case {
                cube,
                truth: parse_truth(set),
                noise_level,
            }),
        });
    }
    cases.sort_by_key(|c| natural_key(&c.timestamp));
    Ok(cases)
}

/// Sorts numeric ids numerically, others as text.
fn natural_key(ts: &str) -> (u8, u64, String) {
    match ts.parse::<u64>() {
        Ok(n) => (0, n, String::new()),
        Err(_) => (1, 0, ts.to_owned()),
    }
}

/// Per-slice accumulator.
#[derive(Debug, Default, Clone, Copy)]
struct Slice {
    cases: usize,
    counts: Counts,
    secs: f64,
}

impl Slice {
    fn report(&self, name: String) -> GroupReport {
        GroupReport {
            name,
            cases: self.cases,
            counts: self.counts,
            f1: self.counts.f1(),
            secs_per_case: self.secs / self.cases.max(1) as f64,
        }
    }
}

/// Runs the benchmark over one dataset: every setting folder of `data`, or `data` itself when
/// it holds an `injection_info.csv`.
pub fn run(data: &Path, params: &Params) -> anyhow::Result<BenchReport> {
    let dataset = data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| data.display().to_string());
    let mut dirs: Vec<_> = if data.join("injection_info.csv").is_file() {
        vec![data.to_owned()]
    } else {
        fs::read_dir(data)
            .with_context(|| format!("reading {}", data.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join("injection_info.csv").is_file())
            .collect()
    };
    dirs.sort();
    if dirs.is_empty() {
        bail!("no injection_info.csv in {} or its folders", data.display());
    }
    let mut settings = Vec::new();
    let mut cases_out = Vec::new();
    let mut skipped = Vec::new();
    let mut total = Counts::default();
    let (mut total_secs, mut total_cases, mut bounded) = (0.0, 0usize, 0usize);
    let mut by_depth: BTreeMap<usize, Slice> = BTreeMap::new();
    let mut by_causes: BTreeMap<usize, Slice> = BTreeMap::new();
    let mut by_noise: BTreeMap<u32, Slice> = BTreeMap::new();
    for dir in dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let cases = load_setting(&dir)?;
        let mut counts = Counts::default();
        let (mut secs, mut run_cases) = (0.0, 0usize);
        for LoadedCase { timestamp, case } in cases {
            let case = match case {
                Ok(c) => c,
                Err(error) => {
                    skipped.push(SkippedCase {
                        setting: name.clone(),
                        timestamp,
                        error,
                    });
                    continue;
                }
            };
            let start = Instant::now();
            let found = match rca::localize_detailed(&case.cube, params) {
                Ok(l) => l,
                Err(e) => {
                    skipped.push(SkippedCase {
                        setting: name.clone(),
                        timestamp,
                        error: e.to_string(),
                    });
                    continue;
                }
            };
            let elapsed = start.elapsed().as_secs_f64();
            let predicted = canonical_predictions(&case.cube, &found.causes);
            let found_list = found
                .causes
                .iter()
                .map(|c| {
                    let one = canonical_predictions(&case.cube, std::slice::from_ref(c));
                    (one.into_iter().next().unwrap_or_default(), c.score, c.ratio)
                })
                .collect();
            let c = score_case(&predicted, &case.truth);
            counts.add(c);
            secs += elapsed;
            run_cases += 1;
            if !found.limits.is_empty() {
                bounded += 1;
            }
            // Slices.
            let mut depths = BTreeSet::new();
            for t in &case.truth {
                let s = by_depth.entry(depth(t)).or_default();
                depths.insert(depth(t));
                if predicted.contains(t) {
                    s.counts.tp += 1;
                } else {
                    s.counts.fn_ += 1;
                }
            }
            for p in predicted.difference(&case.truth) {
                by_depth.entry(depth(p)).or_default().counts.fp += 1;
                depths.insert(depth(p));
            }
            for d in depths {
                by_depth.entry(d).or_default().cases += 1;
            }
            let s = by_causes.entry(case.truth.len()).or_default();
            s.cases += 1;
            s.counts.add(c);
            s.secs += elapsed;
            if let Some(noise) = case.noise_level {
                let band = (noise / NOISE_BAND + 1e-9).floor().max(0.0) as u32;
                let s = by_noise.entry(band).or_default();
                s.cases += 1;
                s.counts.add(c);
                s.secs += elapsed;
            }
            cases_out.push(CaseReport {
                setting: name.clone(),
                timestamp,
                truth: case.truth.iter().cloned().collect(),
                predicted: predicted.into_iter().collect(),
                counts: c,
                secs: elapsed,
                noise_level: case.noise_level,
                limits: found.limits.iter().map(ToString::to_string).collect(),
                negative_leaves: found.negative_leaves,
                found: found_list,
                noise: (found.noise.gamma, found.noise.beta, found.noise.alpha),
            });
        }
        total.add(counts);
        total_secs += secs;
        total_cases += run_cases;
        settings.push(SettingReport {
            riskloc_f1: setting_key(&name).and_then(riskloc_f1),
            name,
            cases: run_cases,
            counts,
            f1: counts.f1(),
            secs_per_case: secs / run_cases.max(1) as f64,
        });
    }
    let is_b0 = settings.iter().all(|s| setting_key(&s.name).is_some());
    let overall = SettingReport {
        name: "overall".into(),
        cases: total_cases,
        counts: total,
        f1: total.f1(),
        secs_per_case: total_secs / total_cases.max(1) as f64,
        riskloc_f1: is_b0.then_some(PUBLISHED_OVERALL[0].1),
    };
    Ok(BenchReport {
        dataset,
        settings,
        by_depth: by_depth
            .into_iter()
            .map(|(d, s)| GroupReport {
                secs_per_case: 0.0,
                ..s.report(format!("depth {d}"))
            })
            .collect(),
        by_causes: by_causes
            .into_iter()
            .map(|(n, s)| s.report(format!("{n} cause{}", if n == 1 { "" } else { "s" })))
            .collect(),
        by_noise: by_noise
            .into_iter()
            .map(|(b, s)| {
                let lo = f64::from(b) * NOISE_BAND;
                s.report(format!("noise {lo:.2}-{:.2}", lo + NOISE_BAND))
            })
            .collect(),
        overall,
        skipped,
        bounded,
        cases: cases_out,
    })
}

/// The report as a text table.
pub fn render_text(report: &BenchReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "dataset {}", report.dataset);
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
    for (title, groups) in [
        ("by cause depth (attributes)", &report.by_depth),
        ("by number of true causes", &report.by_causes),
        ("by forecast noise level", &report.by_noise),
    ] {
        if groups.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\n{title}:");
        for g in groups {
            let secs = if g.secs_per_case > 0.0 {
                format!("{:.5}", g.secs_per_case)
            } else {
                "-".to_owned()
            };
            let _ = writeln!(
                s,
                "  {:<26} {:>5} {:>4} {:>4} {:>4} {:>7.3} {:>10}",
                g.name, g.cases, g.counts.tp, g.counts.fp, g.counts.fn_, g.f1, secs
            );
        }
    }
    let _ = writeln!(
        s,
        "\ncases run {}, skipped {}, search bounded in {}",
        report.overall.cases,
        report.skipped.len(),
        report.bounded
    );
    let negative: Vec<&CaseReport> = report
        .cases
        .iter()
        .filter(|c| c.negative_leaves > 0)
        .collect();
    if !negative.is_empty() {
        let _ = writeln!(
            s,
            "cases with negative observed values (kept, localised): {}",
            negative
                .iter()
                .map(|c| format!("{} ({} leaves)", c.timestamp, c.negative_leaves))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for c in &report.skipped {
        let _ = writeln!(
            s,
            "  skipped {} {}: {} / 已跳过: {}",
            c.setting, c.timestamp, c.error, c.error
        );
    }
    for c in report.cases.iter().filter(|c| !c.limits.is_empty()) {
        let _ = writeln!(
            s,
            "  bounded {} {}: {}",
            c.setting,
            c.timestamp,
            c.limits.join("; ")
        );
    }
    if report.overall.riskloc_f1.is_some() {
        let _ = writeln!(s, "\npublished on these 45 cases (F1, s/case):");
        for (name, f1, secs) in PUBLISHED_OVERALL {
            let _ = writeln!(s, "  {name:<14} {f1:.3}  {secs}");
        }
        let _ = writeln!(
            s,
            "  {:<14} {:.3}  {:.5}  (this run)",
            "storepulse", report.overall.f1, report.overall.secs_per_case
        );
    } else if let Some((_, text)) = PUBLISHED_OTHER.iter().find(|(n, _)| *n == report.dataset) {
        let _ = writeln!(s, "\nreference (benchmark README): {text}");
    }
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

/// One line per dataset: F1, counts, time per case, skipped and bounded cases.
pub fn render_summary(reports: &[BenchReport]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<10} {:>5} {:>5} {:>5} {:>5} {:>7} {:>10} {:>8} {:>8}",
        "dataset", "cases", "TP", "FP", "FN", "F1", "s/case", "skipped", "bounded"
    );
    for r in reports {
        let o = &r.overall;
        let _ = writeln!(
            s,
            "{:<10} {:>5} {:>5} {:>5} {:>5} {:>7.3} {:>10.5} {:>8} {:>8}",
            r.dataset,
            o.cases,
            o.counts.tp,
            o.counts.fp,
            o.counts.fn_,
            o.f1,
            o.secs_per_case,
            r.skipped.len(),
            r.bounded
        );
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
        "dataset": report.dataset,
        "settings": report.settings,
        "by_depth": report.by_depth,
        "by_causes": report.by_causes,
        "by_noise": report.by_noise,
        "overall": report.overall,
        "skipped": report.skipped,
        "bounded": report.bounded,
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
