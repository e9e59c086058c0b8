//! Small statistics for the report.

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v
}

/// Median and (min, max) of repeated measurements.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

pub fn spread(v: &[f64]) -> Spread {
    let s = sorted(v.to_vec());
    Spread {
        median: percentile(&s, 50.0),
        min: s[0],
        max: s[s.len() - 1],
        runs: s.len(),
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.runs > 1 {
            write!(
                f,
                "{:.3} ({:.3}–{:.3}, {} runs)",
                self.median, self.min, self.max, self.runs
            )
        } else {
            write!(f, "{:.3} (1 run)", self.median)
        }
    }
}
