//! Glyph metrics read straight from the embedded DejaVu TrueType files.
//!
//! plotters' ab_glyph text rasterizer (0.3.7) draws each glyph's bitmap at
//! the pen position and drops the glyph's left side bearing, which makes
//! letter spacing uneven in PNGs ("LLaM A"). The bitmap renderer therefore
//! places glyphs one by one and adds the bearing itself; this module supplies
//! the bearings (`hmtx`) and advances, looked up through the `cmap` table.

use std::sync::OnceLock;

/// Horizontal metrics of one font, in font units.
pub(super) struct Metrics {
    /// (first code point, last code point, id delta, offset of the range in
    /// `glyph_ids` or `None`) per cmap format-4 segment.
    segments: Vec<(u32, u32, i32, Option<usize>)>,
    glyph_ids: Vec<u16>,
    /// (advance width, left side bearing) per glyph id.
    hmetrics: Vec<(u16, i16)>,
}

impl Metrics {
    /// Left side bearing and advance of `c` in font units (0 for unknown
    /// characters).
    pub fn bearing_advance(&self, c: char) -> (f64, f64) {
        let gid = self.glyph(c) as usize;
        self.hmetrics
            .get(gid)
            .map_or((0.0, 0.0), |&(a, l)| (l as f64, a as f64))
    }

    fn glyph(&self, c: char) -> u16 {
        let c = c as u32;
        for &(start, end, delta, range) in &self.segments {
            if c < start || c > end {
                continue;
            }
            return match range {
                None => ((c as i32 + delta) & 0xFFFF) as u16,
                Some(off) => match self.glyph_ids.get(off + (c - start) as usize) {
                    Some(&0) | None => 0,
                    Some(&g) => ((g as i32 + delta) & 0xFFFF) as u16,
                },
            };
        }
        0
    }
}

fn u16_at(d: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*d.get(o)?, *d.get(o + 1)?]))
}

fn u32_at(d: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *d.get(o)?,
        *d.get(o + 1)?,
        *d.get(o + 2)?,
        *d.get(o + 3)?,
    ]))
}

fn table<'a>(d: &'a [u8], tag: &[u8; 4]) -> Option<&'a [u8]> {
    let n = u16_at(d, 4)? as usize;
    for i in 0..n {
        let rec = 12 + 16 * i;
        if d.get(rec..rec + 4)? == tag {
            let off = u32_at(d, rec + 8)? as usize;
            let len = u32_at(d, rec + 12)? as usize;
            return d.get(off..off.checked_add(len)?);
        }
    }
    None
}

fn parse(d: &[u8]) -> Option<Metrics> {
    let hhea = table(d, b"hhea")?;
    let hmtx = table(d, b"hmtx")?;
    let maxp = table(d, b"maxp")?;
    let num_glyphs = u16_at(maxp, 4)? as usize;
    let num_h = u16_at(hhea, 34)? as usize;
    let mut hmetrics = Vec::with_capacity(num_glyphs);
    let mut last_adv = 0;
    for g in 0..num_glyphs {
        if g < num_h {
            last_adv = u16_at(hmtx, 4 * g)?;
            hmetrics.push((last_adv, u16_at(hmtx, 4 * g + 2)? as i16));
        } else {
            let lsb = u16_at(hmtx, 4 * num_h + 2 * (g - num_h)).unwrap_or(0) as i16;
            hmetrics.push((last_adv, lsb));
        }
    }
    let cmap = table(d, b"cmap")?;
    let n = u16_at(cmap, 2)? as usize;
    let mut sub = None;
    for i in 0..n {
        let rec = 4 + 8 * i;
        let (platform, encoding) = (u16_at(cmap, rec)?, u16_at(cmap, rec + 2)?);
        let off = u32_at(cmap, rec + 4)? as usize;
        if (platform, encoding) == (3, 1) && u16_at(cmap, off)? == 4 {
            sub = Some(off);
        }
    }
    let s = cmap.get(sub?..)?;
    let seg_count = u16_at(s, 6)? as usize / 2;
    let ends = 14;
    let starts = ends + 2 * seg_count + 2;
    let deltas = starts + 2 * seg_count;
    let ranges = deltas + 2 * seg_count;
    let ids = ranges + 2 * seg_count;
    let len = u16_at(s, 2)? as usize;
    let glyph_ids: Vec<u16> = (ids..len.min(s.len()))
        .step_by(2)
        .map(|o| u16_at(s, o).unwrap_or(0))
        .collect();
    let mut segments = Vec::with_capacity(seg_count);
    for i in 0..seg_count {
        let end = u16_at(s, ends + 2 * i)? as u32;
        let start = u16_at(s, starts + 2 * i)? as u32;
        let delta = u16_at(s, deltas + 2 * i)? as i16 as i32;
        let ro = u16_at(s, ranges + 2 * i)? as usize;
        let range = if ro == 0 {
            None
        } else {
            // idRangeOffset counts bytes from its own position.
            let addr = ranges + 2 * i + ro;
            Some(addr.checked_sub(ids)? / 2)
        };
        segments.push((start, end, delta, range));
    }
    Some(Metrics {
        segments,
        glyph_ids,
        hmetrics,
    })
}

/// Metrics of DejaVu Sans (`bold` picks the bold face); `None` only if the
/// embedded font were unreadable, in which case no bearing is applied.
pub(super) fn metrics(bold: bool) -> Option<&'static Metrics> {
    static REGULAR: OnceLock<Option<Metrics>> = OnceLock::new();
    static BOLD: OnceLock<Option<Metrics>> = OnceLock::new();
    if bold {
        BOLD.get_or_init(|| parse(dejavu::sans::bold())).as_ref()
    } else {
        REGULAR
            .get_or_init(|| parse(dejavu::sans::regular()))
            .as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dejavu_metrics() {
        let m = metrics(false).unwrap();
        // DejaVu Sans: 'I' has advance 604 and bearing 201; 'A' bearing 16.
        assert_eq!(m.bearing_advance('I'), (201.0, 604.0));
        assert_eq!(m.bearing_advance('A').0, 16.0);
        assert_eq!(m.bearing_advance(' ').1, 651.0);
        assert!(metrics(true).is_some());
    }
}
