//! Coarse classes of a fleet, for reports that break results down (eval's tables): its shape,
//! its size band and its heartbeat cadence. Derived from the generated fleet itself, so library
//! files and generated ones are classed alike.

use crate::fleet::Fleet;

/// A fleet's classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetClass {
    /// `one_chain` (one merchant holds more than half the terminals), `shops` (no merchant has
    /// two stores), `chains` (merchants with several stores hold at least 60 %), `mixed`.
    pub shape: &'static str,
    /// `50-499`, `500-1999`, `2000-7999` or `8000+` terminals.
    pub size: &'static str,
    /// `60s` (every terminal at 60 s), `fast` (one interval under 60 s), `slow` (one interval
    /// over 60 s) or `mixed` (several).
    pub cadence: &'static str,
}

impl FleetClass {
    /// Every shape, in report order.
    pub const SHAPES: [&'static str; 4] = ["shops", "mixed", "chains", "one_chain"];
    /// Every size band, in report order.
    pub const SIZES: [&'static str; 4] = ["50-499", "500-1999", "2000-7999", "8000+"];
    /// Every cadence, in report order.
    pub const CADENCES: [&'static str; 4] = ["60s", "fast", "slow", "mixed"];

    /// The classes of `fleet`.
    pub fn of(fleet: &Fleet) -> Self {
        let n = fleet.terminals.len().max(1);
        let size_of = |m: &crate::fleet::Merchant| -> usize {
            m.stores
                .iter()
                .map(|&s| fleet.stores[s].terminals.len())
                .sum()
        };
        let largest = fleet.merchants.iter().map(size_of).max().unwrap_or(0);
        let in_chains: usize = fleet
            .merchants
            .iter()
            .filter(|m| m.stores.len() >= 2)
            .map(size_of)
            .sum();
        let shape = if 2 * largest > n {
            "one_chain"
        } else if in_chains == 0 {
            "shops"
        } else if 10 * in_chains >= 6 * n {
            "chains"
        } else {
            "mixed"
        };
        let size = match fleet.terminals.len() {
            0..500 => "50-499",
            500..2000 => "500-1999",
            2000..8000 => "2000-7999",
            _ => "8000+",
        };
        let first = fleet
            .terminals
            .first()
            .map_or(60, |t| t.heartbeat_interval_secs);
        let cadence = if fleet
            .terminals
            .iter()
            .any(|t| t.heartbeat_interval_secs != first)
        {
            "mixed"
        } else if first == 60 {
            "60s"
        } else if first < 60 {
            "fast"
        } else {
            "slow"
        };
        Self {
            shape,
            size,
            cadence,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::FleetSpec;

    #[test]
    fn shapes_from_specs() {
        let shops = FleetSpec {
            chains: 0,
            shop_terminals: (1, 1),
            ..FleetSpec::with_terminals(300)
        };
        assert_eq!(FleetClass::of(&Fleet::generate(&shops, 1)).shape, "shops");
        let one = FleetSpec {
            chains: 1,
            chain_stores: (200, 200),
            chain_store_terminals: (1, 1),
            ..FleetSpec::with_terminals(300)
        };
        let c = FleetClass::of(&Fleet::generate(&one, 1));
        assert_eq!((c.shape, c.size, c.cadence), ("one_chain", "50-499", "60s"));
        let mixed = FleetSpec {
            heartbeat_mix: vec![(30, 0.5), (180, 0.5)],
            ..FleetSpec::with_terminals(3000)
        };
        let c = FleetClass::of(&Fleet::generate(&mixed, 1));
        assert_eq!(
            (c.shape, c.size, c.cadence),
            ("mixed", "2000-7999", "mixed")
        );
    }
}
