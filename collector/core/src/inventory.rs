//! The operator's inventory: the authoritative list of terminals and their labels, as acquirers
//! and ISVs keep it (a CSV export), and how it overrides what agents announce.
//!
//! [`parse_csv`] turns the CSV into [`Inventory`] (all or nothing, errors name the line and the
//! column). [`Inventory::apply`] merges it over an agent's own [`Identity`]: every label the
//! inventory gives wins, the agent's fills the rest, and each disagreement is reported as a
//! [`Mismatch`] so the terminal can be flagged (a misconfigured agent must not mislead
//! detection).

use std::collections::HashMap;

use storepulse_shared::ids::{IdError, validate_id};
use storepulse_shared::{Identity, Label, LabelKey, LinkType, TerminalId};

/// Most rows an inventory may have.
pub const MAX_ROWS: usize = 1_000_000;

/// The label columns, canonical names first, then the spellings accepted in a header (compared
/// case-insensitively, with spaces, dashes and underscores ignored).
const COLUMNS: [(LabelKey, &[&str]); 12] = [
    (
        Column::TerminalId,
        &["terminal_id", "terminal", "tid", "终端号", "终端编号"],
    ),
    (
        Column::MerchantId,
        &["merchant_id", "merchant", "mid", "商户号", "商户编号"],
    ),
    (
        Column::StoreId,
        &["store_id", "store", "branch", "门店", "门店号", "门店编号"],
    ),
    (
        Column::Region,
        &["region", "province", "区域", "地区", "省份"],
    ),
    (LabelKey::City, &["city", "城市"]),
    (LabelKey::Acquirer, &["acquirer", "收单机构"]),
    (
        Column::QrChannel,
        &["qr_channel", "qr", "qr_provider", "扫码通道"],
    ),
    (LabelKey::Carrier, &["carrier", "isp", "运营商"]),
    (LabelKey::Link, &["link", "link_type", "网络类型"]),
    (LabelKey::Model, &["model", "型号"]),
    (
        Column::Firmware,
        &["firmware", "firmware_version", "固件", "固件版本"],
    ),
    (
        Column::AppVersion,
        &["app_version", "pos_app_version", "应用版本"],
    ),
];

/// One inventory column: a label key.
pub type Column = LabelKey;

/// Why an inventory CSV was refused. Nothing of it was imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    /// No header line.
    #[error("the CSV is empty; the first line must name the columns")]
    Empty,
    /// The header has no terminal column.
    #[error("line 1: no terminal_id column (accepted names: {})", COLUMNS[0].1.join(", "))]
    NoTerminalColumn,
    /// Two header cells name the same column.
    #[error("line 1: columns {first:?} and {second:?} both mean {canonical}")]
    DuplicateColumn {
        /// The first header cell.
        first: String,
        /// The second.
        second: String,
        /// The column both mean.
        canonical: &'static str,
    },
    /// A quoted field is not closed, or a quote appears inside an unquoted field.
    #[error("line {line}: malformed CSV quoting")]
    Quoting {
        /// 1-based line.
        line: usize,
    },
    /// A row has more cells than the header.
    #[error("line {line}: {cells} cells, the header has {header}")]
    TooManyCells {
        /// 1-based line.
        line: usize,
        /// Cells in the row.
        cells: usize,
        /// Cells in the header.
        header: usize,
    },
    /// A value is invalid for its column.
    #[error("line {line}: {column} {value:?}: {reason}")]
    Invalid {
        /// 1-based line.
        line: usize,
        /// Canonical column name.
        column: &'static str,
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// The same terminal is listed twice.
    #[error("line {line}: terminal {terminal} is already listed on line {first}")]
    DuplicateTerminal {
        /// 1-based line of the repetition.
        line: usize,
        /// The first line.
        first: usize,
        /// The terminal.
        terminal: String,
    },
    /// Too many rows.
    #[error("more than {MAX_ROWS} terminals")]
    TooManyRows,
}

/// What the inventory says about one terminal; `None` where it says nothing (the agent's own
/// label is used).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InventoryLabels {
    /// Merchant number.
    pub merchant_id: Option<Label>,
    /// Store id.
    pub store_id: Option<Label>,
    /// Region.
    pub region: Option<Label>,
    /// City.
    pub city: Option<Label>,
    /// Card acquirer.
    pub acquirer: Option<Label>,
    /// QR channel.
    pub qr_channel: Option<Label>,
    /// Carrier or ISP.
    pub carrier: Option<Label>,
    /// Link type.
    pub link: Option<LinkType>,
    /// Hardware model.
    pub model: Option<Label>,
    /// Firmware version.
    pub firmware: Option<Label>,
    /// POS application version.
    pub app_version: Option<Label>,
}

/// One label where the agent and the inventory disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The label.
    pub key: LabelKey,
    /// What the agent announced.
    pub agent: String,
    /// What the inventory says (and detection uses).
    pub inventory: String,
}

/// The parsed inventory: terminal → labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    terminals: HashMap<TerminalId, InventoryLabels>,
}

/// What an import changed, for the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseReport {
    /// Header cells that name no known column (ignored).
    pub ignored_columns: Vec<String>,
}

fn column_from_header(cell: &str) -> Option<LabelKey> {
    let norm = normalise(cell);
    COLUMNS
        .iter()
        .find(|(_, names)| names.iter().any(|n| normalise(n) == norm))
        .map(|(c, _)| *c)
}

fn normalise(s: &str) -> String {
    s.trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

impl Inventory {
    /// An inventory from entries (used by the store when loading).
    pub fn from_entries(entries: impl IntoIterator<Item = (TerminalId, InventoryLabels)>) -> Self {
        Self {
            terminals: entries.into_iter().collect(),
        }
    }

    /// Number of terminals.
    pub fn len(&self) -> usize {
        self.terminals.len()
    }

    /// Whether it lists no terminal.
    pub fn is_empty(&self) -> bool {
        self.terminals.is_empty()
    }

    /// What the inventory says about `terminal`, if it lists it.
    pub fn get(&self, terminal: &TerminalId) -> Option<&InventoryLabels> {
        self.terminals.get(terminal)
    }

    /// Every terminal and its labels, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&TerminalId, &InventoryLabels)> {
        self.terminals.iter()
    }

    /// The labels detection uses for `terminal`: the inventory's where it gives one, the
    /// agent's elsewhere; and every label where the two disagree. A terminal the inventory
    /// does not list keeps its own labels and has no mismatch.
    pub fn apply(&self, terminal: &TerminalId, agent: &Identity) -> (Identity, Vec<Mismatch>) {
        match self.terminals.get(terminal) {
            Some(inv) => inv.apply(agent),
            None => (agent.clone(), Vec::new()),
        }
    }
}

impl InventoryLabels {
    /// Merges these over the agent's labels (see [`Inventory::apply`]).
    pub fn apply(&self, agent: &Identity) -> (Identity, Vec<Mismatch>) {
        let mut out = agent.clone();
        let mut mismatches = Vec::new();
        let mut take = |key: LabelKey, inv: &Option<Label>, slot: &mut Label| {
            if let Some(v) = inv {
                if v != slot {
                    mismatches.push(Mismatch {
                        key,
                        agent: slot.to_string(),
                        inventory: v.to_string(),
                    });
                }
                *slot = v.clone();
            }
        };
        take(
            LabelKey::MerchantId,
            &self.merchant_id,
            &mut out.merchant_id,
        );
        take(LabelKey::StoreId, &self.store_id, &mut out.store_id);
        take(LabelKey::Region, &self.region, &mut out.region);
        take(LabelKey::City, &self.city, &mut out.city);
        take(LabelKey::Acquirer, &self.acquirer, &mut out.acquirer);
        take(LabelKey::QrChannel, &self.qr_channel, &mut out.qr_channel);
        take(LabelKey::Carrier, &self.carrier, &mut out.carrier);
        take(LabelKey::Model, &self.model, &mut out.model);
        take(LabelKey::Firmware, &self.firmware, &mut out.firmware);
        take(
            LabelKey::AppVersion,
            &self.app_version,
            &mut out.app_version,
        );
        if let Some(link) = self.link {
            if link != out.link {
                mismatches.push(Mismatch {
                    key: LabelKey::Link,
                    agent: out.link.as_str().to_owned(),
                    inventory: link.as_str().to_owned(),
                });
            }
            out.link = link;
        }
        // Canonical order, whatever order the fields were taken in.
        mismatches.sort_by_key(|m| LabelKey::ALL.iter().position(|k| *k == m.key));
        (out, mismatches)
    }

    /// The value of one column, as text (`None` where the inventory gives none).
    pub fn value(&self, column: Column) -> Option<String> {
        let l = |v: &Option<Label>| v.as_ref().map(ToString::to_string);
        match column {
            Column::TerminalId => None,
            Column::MerchantId => l(&self.merchant_id),
            Column::StoreId => l(&self.store_id),
            Column::Region => l(&self.region),
            Column::City => l(&self.city),
            Column::Acquirer => l(&self.acquirer),
            Column::QrChannel => l(&self.qr_channel),
            Column::Carrier => l(&self.carrier),
            Column::Link => self.link.map(|k| k.as_str().to_owned()),
            Column::Model => l(&self.model),
            Column::Firmware => l(&self.firmware),
            Column::AppVersion => l(&self.app_version),
        }
    }

    fn set(&mut self, column: Column, value: &str) -> Result<(), String> {
        let label = || Label::new(value).map_err(|e| e.to_string());
        let id = || {
            validate_id(value).map_err(|e: IdError| e.to_string())?;
            label()
        };
        match column {
            Column::TerminalId => {}
            Column::MerchantId => self.merchant_id = Some(id()?),
            Column::StoreId => self.store_id = Some(id()?),
            Column::Region => self.region = Some(label()?),
            Column::City => self.city = Some(label()?),
            Column::Acquirer => self.acquirer = Some(label()?),
            Column::QrChannel => self.qr_channel = Some(label()?),
            Column::Carrier => self.carrier = Some(label()?),
            Column::Link => self.link = Some(parse_link(value)?),
            Column::Model => self.model = Some(label()?),
            Column::Firmware => self.firmware = Some(label()?),
            Column::AppVersion => self.app_version = Some(label()?),
        }
        Ok(())
    }
}

fn parse_link(s: &str) -> Result<LinkType, String> {
    match normalise(s).as_str() {
        "wired" | "ethernet" | "有线" => Ok(LinkType::Wired),
        "wifi" | "wlan" | "无线" => Ok(LinkType::Wifi),
        "cellular" | "4g" | "5g" | "lte" | "mobile" | "移动网络" => Ok(LinkType::Cellular),
        "unknown" => Ok(LinkType::Unknown),
        _ => Err("expected wired, wifi, cellular or unknown".into()),
    }
}

/// Parses an inventory CSV (RFC 4180: comma-separated, fields may be quoted with `"`, `""` is a
/// quote inside one; a UTF-8 byte-order mark is skipped). The first line names the columns;
/// `terminal_id` is required, the others optional and in any order, unknown ones ignored. An
/// empty cell says nothing (the agent's label is used). All or nothing.
pub fn parse_csv(text: &str) -> Result<(Inventory, ParseReport), InventoryError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = Rows::new(text);
    let header = rows.next().ok_or(InventoryError::Empty)??;
    let (header_line, header) = header;
    debug_assert_eq!(header_line, 1);
    let mut columns: Vec<Option<Column>> = Vec::with_capacity(header.len());
    let mut report = ParseReport::default();
    for (i, cell) in header.iter().enumerate() {
        let col = column_from_header(cell);
        if let Some(c) = col
            && let Some(j) = columns.iter().position(|x| *x == Some(c))
        {
            return Err(InventoryError::DuplicateColumn {
                first: header[j].clone(),
                second: header[i].clone(),
                canonical: c.as_str(),
            });
        }
        if col.is_none() && !cell.trim().is_empty() {
            report.ignored_columns.push(cell.trim().to_owned());
        }
        columns.push(col);
    }
    let tid_col = columns
        .iter()
        .position(|c| *c == Some(Column::TerminalId))
        .ok_or(InventoryError::NoTerminalColumn)?;
    let mut terminals = HashMap::new();
    let mut first_line: HashMap<TerminalId, usize> = HashMap::new();
    for row in rows {
        let (line, cells) = row?;
        if cells.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        if cells.len() > columns.len() {
            return Err(InventoryError::TooManyCells {
                line,
                cells: cells.len(),
                header: columns.len(),
            });
        }
        let raw_tid = cells.get(tid_col).map_or("", |c| c.trim());
        let terminal = TerminalId::new(raw_tid).map_err(|e| InventoryError::Invalid {
            line,
            column: LabelKey::TerminalId.as_str(),
            value: raw_tid.to_owned(),
            reason: e.to_string(),
        })?;
        let mut labels = InventoryLabels::default();
        for (cell, col) in cells.iter().zip(&columns) {
            let Some(col) = *col else { continue };
            let value = cell.trim();
            if value.is_empty() {
                continue;
            }
            labels
                .set(col, value)
                .map_err(|reason| InventoryError::Invalid {
                    line,
                    column: col.as_str(),
                    value: value.to_owned(),
                    reason,
                })?;
        }
        if let Some(first) = first_line.get(&terminal) {
            return Err(InventoryError::DuplicateTerminal {
                line,
                first: *first,
                terminal: terminal.to_string(),
            });
        }
        if terminals.len() >= MAX_ROWS {
            return Err(InventoryError::TooManyRows);
        }
        first_line.insert(terminal.clone(), line);
        terminals.insert(terminal, labels);
    }
    Ok((Inventory { terminals }, report))
}

/// Splits CSV text into rows of cells, with the 1-based line each row starts on.
struct Rows<'a> {
    rest: &'a str,
    line: usize,
}

impl<'a> Rows<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            rest: text,
            line: 1,
        }
    }
}

impl Iterator for Rows<'_> {
    type Item = Result<(usize, Vec<String>), InventoryError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let start_line = self.line;
        let mut cells = Vec::new();
        let mut cell = String::new();
        let mut chars = self.rest.char_indices().peekable();
        let mut quoted = false;
        let mut was_quoted = false;
        while let Some((i, c)) = chars.next() {
            if quoted {
                match c {
                    '"' if chars.peek().is_some_and(|(_, n)| *n == '"') => {
                        chars.next();
                        cell.push('"');
                    }
                    '"' => quoted = false,
                    '\n' => {
                        self.line += 1;
                        cell.push(c);
                    }
                    _ => cell.push(c),
                }
                continue;
            }
            match c {
                ',' => {
                    cells.push(std::mem::take(&mut cell));
                    was_quoted = false;
                }
                '"' if cell.trim().is_empty() && !was_quoted => {
                    cell.clear();
                    quoted = true;
                    was_quoted = true;
                }
                '"' => {
                    self.rest = "";
                    return Some(Err(InventoryError::Quoting { line: self.line }));
                }
                '\r' if chars.peek().is_some_and(|(_, n)| *n == '\n') => {}
                '\n' => {
                    cells.push(std::mem::take(&mut cell));
                    self.rest = &self.rest[i + 1..];
                    self.line += 1;
                    return Some(Ok((start_line, cells)));
                }
                _ if was_quoted && !c.is_whitespace() => {
                    self.rest = "";
                    return Some(Err(InventoryError::Quoting { line: self.line }));
                }
                _ => cell.push(c),
            }
        }
        self.rest = "";
        if quoted {
            return Some(Err(InventoryError::Quoting { line: start_line }));
        }
        cells.push(cell);
        Some(Ok((start_line, cells)))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn l(s: &str) -> Label {
        Label::new(s).expect("label")
    }

    fn t(s: &str) -> TerminalId {
        TerminalId::new(s).expect("id")
    }

    fn agent() -> Identity {
        Identity {
            terminal_id: t("T1"),
            merchant_id: l("M1"),
            store_id: l("S1"),
            region: l("east"),
            city: l("上海"),
            acquirer: l("acq-a"),
            qr_channel: l("wechatpay"),
            carrier: l("cmcc"),
            link: LinkType::Wifi,
            model: l("P300"),
            firmware: l("2.3.1"),
            app_version: l("5.0.2"),
        }
    }

    #[test]
    fn parses_aliases_quotes_and_empty_cells() {
        let csv = "\u{feff}终端号,Merchant ID,store,City,QR Channel,link,notes\r\n\
                   T1,M1,S9,\"Hang,zhou\",,cellular,\"said \"\"hi\"\"\"\r\n\
                   \n\
                   T2,M2,,,alipay,,\n";
        let (inv, report) = parse_csv(csv).expect("parses");
        assert_eq!(inv.len(), 2);
        assert_eq!(report.ignored_columns, vec!["notes".to_owned()]);
        let t1 = inv.get(&t("T1")).expect("T1");
        assert_eq!(t1.store_id, Some(l("S9")));
        assert_eq!(t1.city, Some(l("Hang,zhou")));
        assert_eq!(t1.qr_channel, None);
        assert_eq!(t1.link, Some(LinkType::Cellular));
        let t2 = inv.get(&t("T2")).expect("T2");
        assert_eq!(t2.qr_channel, Some(l("alipay")));
        assert_eq!(t2.store_id, None);
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let err = |csv: &str| parse_csv(csv).expect_err("refused").to_string();
        assert_eq!(
            err(""),
            "the CSV is empty; the first line must name the columns"
        );
        assert!(err("merchant,store\nM1,S1\n").starts_with("line 1: no terminal_id column"));
        assert_eq!(
            err("terminal,tid\n"),
            "line 1: columns \"terminal\" and \"tid\" both mean terminal_id"
        );
        assert_eq!(
            err("terminal,store\nT1,S1\nT 2,S2\n"),
            "line 3: terminal_id \"T 2\": contains ' ', allowed are A-Z a-z 0-9 and . _ : -"
        );
        assert_eq!(
            err("terminal,store\nT1,商户 1\n"),
            "line 2: store_id \"商户 1\": contains '商', allowed are A-Z a-z 0-9 and . _ : -"
        );
        assert_eq!(
            err("terminal,link\nT1,satellite\n"),
            "line 2: link \"satellite\": expected wired, wifi, cellular or unknown"
        );
        assert_eq!(
            err("terminal\nT1\nT2\nT1\n"),
            "line 4: terminal T1 is already listed on line 2"
        );
        assert_eq!(
            err("terminal,notes\nT1,\"a\nb\"\nT1,x\n"),
            "line 4: terminal T1 is already listed on line 2"
        );
        assert_eq!(err("terminal\nT1,x\n"), "line 2: 2 cells, the header has 1");
        assert_eq!(err("terminal\n\"T1\n"), "line 2: malformed CSV quoting");
        assert_eq!(err("terminal\nT\"1\n"), "line 2: malformed CSV quoting");
    }

    #[test]
    fn inventory_wins_and_mismatches_are_reported() {
        let (inv, _) =
            parse_csv("terminal_id,store_id,city,link\nT1,S2,上海,cellular\n").expect("parses");
        let (eff, mm) = inv.apply(&t("T1"), &agent());
        assert_eq!(eff.store_id, l("S2"));
        assert_eq!(eff.city, l("上海"));
        assert_eq!(eff.link, LinkType::Cellular);
        assert_eq!(
            eff.merchant_id,
            l("M1"),
            "not in the inventory: the agent's"
        );
        assert_eq!(
            mm,
            vec![
                Mismatch {
                    key: LabelKey::StoreId,
                    agent: "S1".into(),
                    inventory: "S2".into()
                },
                Mismatch {
                    key: LabelKey::Link,
                    agent: "wifi".into(),
                    inventory: "cellular".into()
                },
            ]
        );
        let (eff, mm) = inv.apply(&t("T9"), &agent());
        assert_eq!(eff, agent());
        assert!(mm.is_empty());
    }

    proptest! {
        /// Whatever the cells hold, quoting them RFC 4180-style reads them back unchanged.
        #[test]
        fn quoted_cells_roundtrip(cities in proptest::collection::vec("[a-z,\" 上海]{1,12}", 1..20)) {
            let mut csv = String::from("terminal,city\n");
            let mut want = Vec::new();
            for (i, c) in cities.iter().enumerate() {
                let trimmed = c.trim();
                csv.push_str(&format!("T{i},\"{}\"\n", c.replace('"', "\"\"")));
                want.push((format!("T{i}"), trimmed.to_owned()));
            }
            let (inv, _) = parse_csv(&csv).expect("parses");
            for (tid, city) in want {
                let got = inv.get(&t(&tid)).and_then(|e| e.city.as_ref()).map(ToString::to_string);
                let expect = (!city.is_empty()).then_some(city);
                prop_assert_eq!(got, expect);
            }
        }

        /// Arbitrary text never panics the parser.
        #[test]
        fn garbage_never_panics(text in "\\PC{0,200}") {
            let _ = parse_csv(&text);
        }
    }
}
