//! Weighted, seeded mixing of chat sources.
//!
//! Each source `i` has items with sizes (1 per example, or token counts) and
//! a weight `w_i`. Its target is its share of the total:
//! `total * w_i / sum(w)`; in examples the shares are apportioned by largest
//! remainder (ties to the earlier source) so they add up to `total`
//! exactly; in tokens they are floored.
//!
//! A source's items are taken in a seeded shuffle of its own
//! (`Rng::derive(seed, "data.mix/<name>")`), as a prefix by the rule of
//! [`super::budget::prefix_within`] (stop at the first item that would pass
//! the target). A source smaller than its target is used whole and the
//! shortfall reported (`short`), unless `upsample` is set: then further
//! passes, each in a fresh shuffle (`"data.mix/<name>/<pass>"`), repeat its
//! items until the target is reached (`passes` counts the passes begun).
//!
//! The output order: with `shuffle`, one seeded shuffle of all picks
//! (`"data.mix/order"`); without, source by source (in the order given),
//! each source's picks in input order.

use super::budget::prefix_within;
use crate::rng::Rng;

/// One source to mix.
#[derive(Debug, Clone)]
pub struct MixSource {
    /// Its name (the list entry name).
    pub name: String,
    /// Its weight (not negative).
    pub weight: f64,
    /// Size of each item (1 for examples, tokens otherwise).
    pub sizes: Vec<usize>,
}

/// What was taken from one source.
#[derive(Debug, Clone, PartialEq)]
pub struct Taken {
    /// Target size.
    pub target: u64,
    /// Items taken (repeats included).
    pub items: usize,
    /// Their size.
    pub size: u64,
    /// Target minus size reached (0 when reached or exceeded).
    pub short: u64,
    /// Passes over the source begun (more than 1 only with upsampling).
    pub passes: usize,
}

/// Targets per source: shares of `total` by weight (see the module doc).
pub fn targets(weights: &[f64], total: u64, exact: bool) -> Vec<u64> {
    let sum: f64 = weights.iter().sum();
    if sum <= 0.0 {
        return vec![0; weights.len()];
    }
    let raw: Vec<f64> = weights.iter().map(|w| total as f64 * w / sum).collect();
    let mut t: Vec<u64> = raw.iter().map(|r| r.floor() as u64).collect();
    if exact {
        let mut left = total.saturating_sub(t.iter().sum());
        let mut order: Vec<usize> = (0..raw.len()).collect();
        // Largest remainder first; the stable sort keeps earlier sources first on ties.
        order.sort_by(|&a, &b| {
            let (ra, rb) = (raw[a] - raw[a].floor(), raw[b] - raw[b].floor());
            rb.total_cmp(&ra)
        });
        for i in order {
            if left == 0 {
                break;
            }
            if weights[i] > 0.0 {
                t[i] += 1;
                left -= 1;
            }
        }
    }
    t
}

/// Picks items: `(picks as (source index, item index), per-source report)`.
/// `exact` apportions targets exactly (examples); see the module doc.
pub fn mix(
    sources: &[MixSource],
    total: u64,
    exact: bool,
    seed: u64,
    upsample: bool,
    shuffle: bool,
) -> (Vec<(usize, usize)>, Vec<Taken>) {
    let weights: Vec<f64> = sources.iter().map(|s| s.weight).collect();
    let tg = targets(&weights, total, exact);
    let mut picks = Vec::new();
    let mut reports = Vec::new();
    for (si, (s, &target)) in sources.iter().zip(&tg).enumerate() {
        let mut size = 0u64;
        let mut items = 0usize;
        let mut passes = 0usize;
        let mut mine = Vec::new();
        loop {
            if s.sizes.is_empty() || target == 0 {
                break;
            }
            let label = if passes == 0 {
                format!("data.mix/{}", s.name)
            } else {
                format!("data.mix/{}/{passes}", s.name)
            };
            passes += 1;
            let mut order: Vec<usize> = (0..s.sizes.len()).collect();
            Rng::derive(seed, &label).shuffle(&mut order);
            let sizes: Vec<usize> = order.iter().map(|&i| s.sizes[i]).collect();
            let (n, got) = prefix_within(&sizes, target - size);
            mine.extend(order[..n].iter().map(|&i| (si, i)));
            items += n;
            size += got;
            // Stop when the pass ended early (target reached or the next item
            // does not fit), when not upsampling, or when a pass added nothing.
            if n < sizes.len() || !upsample || n == 0 {
                break;
            }
        }
        if !shuffle {
            mine.sort_unstable();
        }
        picks.extend(mine);
        reports.push(Taken {
            target,
            items,
            size,
            short: target.saturating_sub(size),
            passes,
        });
    }
    if shuffle {
        Rng::derive(seed, "data.mix/order").shuffle(&mut picks);
    }
    (picks, reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(name: &str, weight: f64, n: usize) -> MixSource {
        MixSource {
            name: name.into(),
            weight,
            sizes: vec![1; n],
        }
    }

    #[test]
    fn targets_add_up_and_follow_weights() {
        assert_eq!(targets(&[1.0, 1.0, 1.0], 10, true), vec![4, 3, 3]);
        assert_eq!(targets(&[3.0, 1.0], 10, true), vec![8, 2]);
        assert_eq!(targets(&[1.0, 0.0], 5, true), vec![5, 0]);
        assert_eq!(targets(&[1.0, 2.0], 10, false), vec![3, 6]);
    }

    #[test]
    fn mixing_is_seeded_clamps_and_upsamples() {
        let s = [src("a", 1.0, 100), src("b", 1.0, 3)];
        let (p1, r1) = mix(&s, 20, true, 7, false, true);
        let (p2, _) = mix(&s, 20, true, 7, false, true);
        assert_eq!(p1, p2);
        assert_eq!((r1[0].items, r1[1].items, r1[1].short), (10, 3, 7));
        let (p3, _) = mix(&s, 20, true, 8, false, true);
        assert_ne!(p1, p3);
        let (p, r) = mix(&s, 20, true, 7, true, false);
        assert_eq!((r[1].items, r[1].short, r[1].passes), (10, 0, 4));
        assert_eq!(p.len(), 20);
        assert!(p.windows(2).all(|w| w[0] <= w[1]), "grouped, input order");
    }
}
