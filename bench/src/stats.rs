//! Median and spread of a handful of repeated measurements.

/// The median and range of repeated measurements of one figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// How many measurements.
    pub n: usize,
}

impl Summary {
    /// Summarize `values`, ignoring NaNs; `None` when nothing is left.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Summary {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            n,
        })
    }

    /// Half the range, relative to the median, in percent: `12 ±3 %` reads "the rounds
    /// fell within 3 % of 12 either side" (for an even spread around the median).
    pub fn spread_percent(&self) -> f64 {
        if self.median == 0.0 {
            return 0.0;
        }
        (self.max - self.min) / 2.0 / self.median.abs() * 100.0
    }
}

/// The change of `value` against the mean of the no-filter bursts run just before and just
/// after it, as a fraction (`0.10` = 10 % more).
pub fn paired_change(before: f64, value: f64, after: f64) -> f64 {
    let baseline = (before + after) / 2.0;
    value / baseline - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(Summary::of(&[3.0, 1.0, 2.0]).unwrap().median, 2.0);
        assert_eq!(Summary::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
    }

    #[test]
    fn range_and_spread() {
        let s = Summary::of(&[90.0, 100.0, 110.0]).unwrap();
        assert_eq!((s.min, s.max, s.n), (90.0, 110.0, 3));
        assert!((s.spread_percent() - 10.0).abs() < 1e-9);
    }

    #[test]
    fn nothing_to_summarize() {
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[f64::NAN]), None);
        assert_eq!(Summary::of(&[f64::NAN, 5.0]).unwrap().median, 5.0);
    }

    #[test]
    fn paired_change_against_the_mean_of_both_neighbours() {
        assert!((paired_change(10.0, 11.0, 10.0) - 0.10).abs() < 1e-9);
        // The machine slowed down during the pair: the baseline moves with it.
        assert!((paired_change(10.0, 12.0, 14.0) - 0.0).abs() < 1e-9);
    }
}
