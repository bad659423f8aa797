//! Rates: `-m limit --limit N/UNIT --limit-burst B`, the config's
//! `limit`/`limit_burst`.

/// The unit of a rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateUnit {
    Second,
    Minute,
    Hour,
    Day,
}

impl RateUnit {
    pub fn name(self) -> &'static str {
        match self {
            RateUnit::Second => "second",
            RateUnit::Minute => "minute",
            RateUnit::Hour => "hour",
            RateUnit::Day => "day",
        }
    }

    fn seconds(self) -> u64 {
        match self {
            RateUnit::Second => 1,
            RateUnit::Minute => 60,
            RateUnit::Hour => 3600,
            RateUnit::Day => 86_400,
        }
    }
}

/// `-m limit --limit COUNT/PER --limit-burst BURST`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub count: u32,
    pub per: RateUnit,
    pub burst: u32,
}

/// iptables' defaults for `-m limit` without options.
impl Default for Limit {
    fn default() -> Self {
        Limit {
            count: 3,
            per: RateUnit::Hour,
            burst: 5,
        }
    }
}

/// The largest burst xt_limit takes.
pub const MAX_LIMIT_BURST: u32 = 10_000;

impl Limit {
    /// Time per packet at the average rate.
    pub fn interval_ns(&self) -> u64 {
        self.per.seconds() * 1_000_000_000 / u64::from(self.count)
    }
}

/// `N`, `N/second`, or any prefix of `second`, `minute`, `hour`, `day`.
pub fn parse_rate(s: &str) -> Result<(u32, RateUnit), String> {
    let (n, unit) = match s.split_once('/') {
        Some((n, u)) => (n, Some(u.to_ascii_lowercase())),
        None => (s, None),
    };
    let count: u32 = match n.parse() {
        Ok(c) if c > 0 => c,
        _ => return Err(format!("{n:?} is not a positive count")),
    };
    let per = match unit.as_deref() {
        None => RateUnit::Second,
        Some(u) => [
            RateUnit::Second,
            RateUnit::Minute,
            RateUnit::Hour,
            RateUnit::Day,
        ]
        .into_iter()
        .find(|r| !u.is_empty() && r.name().starts_with(u))
        .ok_or_else(|| format!("unknown unit {u:?} (second, minute, hour or day)"))?,
    };
    Ok((count, per))
}
