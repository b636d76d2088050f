//! Plane geometry in output pixels: rectangles, clipping, dashes, sampling.

/// A point in output pixels.
pub(super) type P = (f64, f64);

/// An axis-aligned rectangle in output pixels.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rect {
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
}

impl Rect {
    /// Whether `p` lies inside or on the edge.
    pub(super) fn contains(&self, (x, y): P) -> bool {
        x >= self.x0 && x <= self.x1 && y >= self.y0 && y <= self.y1
    }
}

/// A segment clipped to a rectangle, and whether each original end survived.
struct Clipped {
    a: P,
    b: P,
    a_kept: bool,
    b_kept: bool,
}

/// Points every `step` pixels along a polyline (for legend placement).
pub(super) fn sample(pts: &[P], step: f64, out: &mut Vec<P>) {
    for w in pts.windows(2) {
        let (a, b) = (w[0], w[1]);
        let len = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
        let n = (len / step).ceil().clamp(1.0, 10_000.0) as usize;
        for i in 0..=n {
            let t = i as f64 / n as f64;
            out.push((a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1)));
        }
    }
}

/// Splits a polyline into dashes of length `on` separated by `off`.
pub(super) fn dashes(pts: &[P], on: f64, off: f64) -> Vec<Vec<P>> {
    let mut out = Vec::new();
    if on <= 0.0 || pts.len() < 2 {
        return out;
    }
    let mut drawing = true;
    let mut left = on;
    let mut cur: Vec<P> = vec![pts[0]];
    for w in pts.windows(2) {
        let (mut a, b) = (w[0], w[1]);
        let mut len = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
        if !len.is_finite() {
            continue;
        }
        while len > 0.0 {
            let step = left.min(len);
            let t = step / len;
            let q = (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
            if drawing {
                cur.push(q);
            }
            left -= step;
            len -= step;
            a = q;
            if left <= 1e-9 {
                if drawing {
                    out.push(std::mem::take(&mut cur));
                } else {
                    cur = vec![q];
                }
                drawing = !drawing;
                left = if drawing { on } else { off };
            }
        }
    }
    if drawing && cur.len() >= 2 {
        out.push(cur);
    }
    out.retain(|d| d.len() >= 2);
    out
}

/// Clips a segment to `r` (Liang-Barsky).
fn clip_segment(a: P, b: P, r: Rect) -> Option<Clipped> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [
        (-dx, a.0 - r.x0),
        (dx, r.x1 - a.0),
        (-dy, a.1 - r.y0),
        (dy, r.y1 - a.1),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let t = q / p;
            if p < 0.0 {
                if t > t1 {
                    return None;
                }
                t0 = t0.max(t);
            } else {
                if t < t0 {
                    return None;
                }
                t1 = t1.min(t);
            }
        }
    }
    Some(Clipped {
        a: (a.0 + t0 * dx, a.1 + t0 * dy),
        b: (a.0 + t1 * dx, a.1 + t1 * dy),
        a_kept: t0 == 0.0,
        b_kept: t1 == 1.0,
    })
}

/// The visible pieces of a polyline inside `r`.
pub(super) fn clip_polyline(pts: &[P], r: Rect) -> Vec<Vec<P>> {
    let mut out = Vec::new();
    let mut cur: Vec<P> = Vec::new();
    for w in pts.windows(2) {
        match clip_segment(w[0], w[1], r) {
            None => {
                if cur.len() >= 2 {
                    out.push(std::mem::take(&mut cur));
                }
                cur.clear();
            }
            Some(Clipped {
                a: p,
                b: q,
                a_kept,
                b_kept,
            }) => {
                if cur.is_empty() || !a_kept {
                    if cur.len() >= 2 {
                        out.push(std::mem::take(&mut cur));
                    }
                    cur = vec![p];
                }
                cur.push(q);
                if !b_kept {
                    out.push(std::mem::take(&mut cur));
                }
            }
        }
    }
    if cur.len() >= 2 {
        out.push(cur);
    }
    out
}

/// Clips a polygon to `r` (Sutherland-Hodgman).
pub(super) fn clip_polygon(poly: &[P], r: Rect) -> Vec<P> {
    // Edge k keeps: x >= x0, x <= x1, y >= y0, y <= y1.
    let inside = |p: P, k: usize| match k {
        0 => p.0 >= r.x0,
        1 => p.0 <= r.x1,
        2 => p.1 >= r.y0,
        _ => p.1 <= r.y1,
    };
    let cross = |a: P, b: P, k: usize| -> P {
        let t = match k {
            0 => (r.x0 - a.0) / (b.0 - a.0),
            1 => (r.x1 - a.0) / (b.0 - a.0),
            2 => (r.y0 - a.1) / (b.1 - a.1),
            _ => (r.y1 - a.1) / (b.1 - a.1),
        };
        (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1))
    };
    let mut out: Vec<P> = poly.to_vec();
    for k in 0..4 {
        if out.is_empty() {
            break;
        }
        let input = std::mem::take(&mut out);
        for i in 0..input.len() {
            let cur = input[i];
            let prev = input[(i + input.len() - 1) % input.len()];
            match (inside(cur, k), inside(prev, k)) {
                (true, true) => out.push(cur),
                (true, false) => {
                    out.push(cross(prev, cur, k));
                    out.push(cur);
                }
                (false, true) => out.push(cross(prev, cur, k)),
                (false, false) => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dash_and_clip() {
        let d = dashes(&[(0.0, 0.0), (20.0, 0.0)], 5.0, 5.0);
        assert_eq!(d.len(), 2);
        assert_eq!(d[1], vec![(10.0, 0.0), (15.0, 0.0)]);
        let r = Rect {
            x0: 0.0,
            y0: 0.0,
            x1: 10.0,
            y1: 10.0,
        };
        let pieces = clip_polyline(&[(-5.0, 5.0), (5.0, 5.0), (8.0, 8.0), (20.0, 8.0)], r);
        assert_eq!(
            pieces,
            vec![vec![(0.0, 5.0), (5.0, 5.0), (8.0, 8.0), (10.0, 8.0)]]
        );
        let poly = clip_polygon(&[(-5.0, -5.0), (15.0, -5.0), (15.0, 15.0), (-5.0, 15.0)], r);
        assert_eq!(poly.len(), 4);
    }
}
