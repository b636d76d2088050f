//! Drawing a prepared figure: panel layout, grid, data (lines, markers,
//! bands, bars, reference lines), axes text and the legend.

use super::Kind;
use super::canvas::{Canvas, Ink, R, rgba};
use super::geom::{Rect, clip_polygon, clip_polyline, dashes, sample};
use super::prepare::{LegendPos, PPanel, Prepared, Rgb, Style};
use super::scale::Scale;
use plotters::prelude::DrawingBackend;
use plotters::style::text_anchor::HPos;

const WHITE_C: Rgb = Rgb(255, 255, 255);
const GRID: Rgb = Rgb(0xDD, 0xDD, 0xDD);
const SPINE: Rgb = Rgb(0xC4, 0xC4, 0xC4);
const LEGEND_EDGE: Rgb = Rgb(0xCC, 0xCC, 0xCC);
const INK: Rgb = Rgb(0x26, 0x26, 0x26);
const NOTE: Rgb = Rgb(0x88, 0x88, 0x88);
const ERRBAR: Rgb = Rgb(0x33, 0x33, 0x33);
/// Band fill opacity (royalblue at 0.25 gives the paper's light blue).
const BAND_ALPHA: f64 = 0.25;
/// Cap height and descent of DejaVu Sans, as fractions of the font size.
const CAP: f64 = 0.626;
const DESC: f64 = 0.2;

/// Draws the whole figure on `cv`.
pub(super) fn render<DB: DrawingBackend>(cv: &Canvas<'_, DB>, fig: &Prepared) -> R {
    let (w, h) = (fig.width as f64, fig.height as f64);
    cv.fill_rect(0.0, 0.0, w, h, rgba(WHITE_C, 1.0))?;
    let cols = fig.columns.max(1) as f64;
    let rows = fig.grid_rows.max(1) as f64;
    let unit = ((w / cols / 500.0).min(h / rows / 420.0)).clamp(0.6, 2.0);
    let mut top = 0.0;
    if let Some(t) = &fig.title {
        let size = 22.0 * unit;
        let base = 8.0 * unit + CAP * size;
        cv.text(
            t,
            (w / 2.0, base),
            HPos::Center,
            Ink {
                size,
                bold: true,
                color: INK,
            },
        )?;
        top = base + DESC * size + 4.0 * unit;
    }
    let cell_w = w / cols;
    let cell_h = (h - top) / rows;
    for (i, p) in fig.panels.iter().enumerate() {
        let (c, r) = (
            (i as u32 % fig.columns.max(1)) as f64,
            (i as u32 / fig.columns.max(1)) as f64,
        );
        let cell = Rect {
            x0: c * cell_w,
            y0: top + r * cell_h,
            x1: (c + 1.0) * cell_w,
            y1: top + (r + 1.0) * cell_h,
        };
        draw_panel(cv, p, cell, unit)?;
    }
    Ok(())
}

/// Font sizes and spacing of a panel, in output pixels.
struct Sizes {
    title: f64,
    label: f64,
    tick: f64,
    legend: f64,
    pad: f64,
    gap: f64,
}

fn draw_panel<DB: DrawingBackend>(cv: &Canvas<'_, DB>, p: &PPanel, cell: Rect, u: f64) -> R {
    let sz = Sizes {
        title: 19.0 * u,
        label: 16.0 * u,
        tick: 14.0 * u,
        legend: 13.5 * u,
        pad: 8.0 * u,
        gap: 6.0 * u,
    };
    let bars = matches!(p.kind, Kind::Bar | Kind::StackedBar);

    // --- layout
    let mut ytw = 0.0f64;
    for l in &p.y.labels {
        ytw = ytw.max(cv.text_width(l, sz.tick, false)?);
    }
    let mut xtw = Vec::with_capacity(p.x.labels.len());
    for l in &p.x.labels {
        xtw.push(cv.text_width(l, sz.tick, false)?);
    }
    let top = cell.y0
        + sz.pad
        + if p.title.is_some() {
            (CAP + DESC) * sz.title + 2.0 * sz.gap
        } else {
            sz.gap
        };
    let left = cell.x0 + sz.pad + (CAP + DESC) * sz.label + sz.gap + ytw + sz.gap;
    let right_guess = cell.x1 - sz.pad - xtw.last().map_or(0.0, |w| w / 2.0).max(2.0 * u);
    // Bar categories that do not fit side by side are written vertically.
    let slot = (right_guess - left) / (p.x.ticks.len().max(1) as f64);
    let vertical = bars && xtw.iter().any(|w| *w > slot * 0.95);
    let tick_block = if vertical {
        xtw.iter().copied().fold(0.0, f64::max)
    } else {
        (CAP + DESC) * sz.tick
    };
    let bottom = cell.y1 - sz.pad - (CAP + DESC) * sz.label - sz.gap - tick_block - sz.gap;
    let right = if vertical {
        cell.x1 - sz.pad - 2.0 * u
    } else {
        right_guess
    };
    let plot = Rect {
        x0: left.round(),
        y0: top.round(),
        x1: right.max(left + 1.0).round(),
        y1: bottom.max(top + 1.0).round(),
    };
    let sx = |v: f64| map_x(&p.x, v, plot);
    let sy = |v: f64| map_y(&p.y, v, plot);

    // --- grid
    if !bars {
        for &t in &p.x.ticks {
            cv.vline(sx(t), plot.y0, plot.y1, 1.0, rgba(GRID, 1.0))?;
        }
    }
    for &t in &p.y.ticks {
        cv.hline(plot.x0, plot.x1, sy(t), 1.0, rgba(GRID, 1.0))?;
    }

    // --- data
    let mut obstacles: Vec<(f64, f64)> = Vec::new();
    if bars {
        draw_bars(cv, p, plot, u, &mut obstacles)?;
    }
    if !bars {
        for s in &p.series {
            let banded: Vec<(f64, f64, f64)> = s
                .points
                .iter()
                .filter_map(|pt| pt.band.map(|b| (pt.x, pt.y, b)))
                .collect();
            if banded.len() >= 2 && p.kind == Kind::Line {
                let mut poly: Vec<(f64, f64)> =
                    banded.iter().map(|&(x, y, b)| (sx(x), sy(y + b))).collect();
                poly.extend(banded.iter().rev().map(|&(x, y, b)| (sx(x), sy(y - b))));
                let clipped = clip_polygon(&poly, plot);
                cv.polygon(&clipped, rgba(s.style.color, BAND_ALPHA))?;
                // The band's outline keeps the legend off it.
                let mut ring = clipped.clone();
                ring.extend(clipped.first().copied());
                sample(&ring, 3.0, &mut obstacles);
            } else {
                for &(x, y, b) in &banded {
                    error_bar(
                        cv,
                        (sx(x), sy(y - b), sy(y + b)),
                        8.0 * u,
                        s.style.color,
                        u,
                        plot,
                    )?;
                }
            }
        }
    }
    for r in &p.refs {
        let y = sy(r.y);
        if y < plot.y0 - 0.5 || y > plot.y1 + 0.5 {
            continue;
        }
        let line = [(plot.x0, y), (plot.x1, y)];
        sample(&line, 3.0, &mut obstacles);
        if r.style.dashed {
            for d in dashes(&line, 7.0 * u, 3.5 * u) {
                cv.hline(
                    d[0].0,
                    d[d.len() - 1].0,
                    y,
                    2.0 * u,
                    rgba(r.style.color, 1.0),
                )?;
            }
        } else {
            cv.hline(plot.x0, plot.x1, y, 2.0 * u, rgba(r.style.color, 1.0))?;
        }
    }
    if !bars {
        for s in &p.series {
            let pts: Vec<(f64, f64)> = s.points.iter().map(|pt| (sx(pt.x), sy(pt.y))).collect();
            if p.kind == Kind::Line && pts.len() >= 2 {
                for piece in clip_polyline(&pts, plot) {
                    sample(&piece, 3.0, &mut obstacles);
                    if s.style.dashed {
                        for d in dashes(&piece, 7.0 * u, 3.5 * u) {
                            cv.path(&d, s.style.color, 2.5 * u)?;
                        }
                    } else {
                        cv.path(&piece, s.style.color, 2.5 * u)?;
                    }
                }
            }
            let markers = s.style.marker || p.kind == Kind::Point || pts.len() == 1;
            if markers {
                let r = if p.kind == Kind::Point {
                    5.0 * u
                } else {
                    6.0 * u
                };
                for &q in pts.iter().filter(|q| plot.contains(**q)) {
                    cv.circle(q, r, s.style.color)?;
                    for d in [(0.0, 0.0), (-r, 0.0), (r, 0.0), (0.0, -r), (0.0, r)] {
                        obstacles.push((q.0 + d.0, q.1 + d.1));
                    }
                }
            }
        }
    }

    // --- frame, ticks, labels
    for (x0, y0, x1, y1) in [
        (plot.x0, plot.y0, plot.x1 + 1.0, plot.y0 + 1.0),
        (plot.x0, plot.y1, plot.x1 + 1.0, plot.y1 + 1.0),
        (plot.x0, plot.y0, plot.x0 + 1.0, plot.y1 + 1.0),
        (plot.x1, plot.y0, plot.x1 + 1.0, plot.y1 + 1.0),
    ] {
        cv.fill_rect(x0, y0, x1, y1, rgba(SPINE, 1.0))?;
    }
    for (t, l) in p.y.ticks.iter().zip(&p.y.labels) {
        let base = sy(*t) + CAP * sz.tick / 2.0;
        cv.text(
            l,
            (plot.x0 - sz.gap, base),
            HPos::Right,
            Ink::new(sz.tick, INK),
        )?;
    }
    for (t, l) in p.x.ticks.iter().zip(&p.x.labels) {
        if vertical {
            let at = (sx(*t) + CAP * sz.tick / 2.0, plot.y1 + sz.gap);
            cv.text_up(l, at, HPos::Right, Ink::new(sz.tick, INK))?;
        } else {
            let at = (sx(*t), plot.y1 + sz.gap + CAP * sz.tick);
            cv.text(l, at, HPos::Center, Ink::new(sz.tick, INK))?;
        }
    }
    let x_base = plot.y1 + sz.gap + tick_block + sz.gap + CAP * sz.label;
    let label = Ink::new(sz.label, INK);
    cv.text(
        &p.x_label,
        ((plot.x0 + plot.x1) / 2.0, x_base),
        HPos::Center,
        label,
    )?;
    let y_base = cell.x0 + sz.pad + CAP * sz.label;
    cv.text_up(
        &p.y_label,
        (y_base, (plot.y0 + plot.y1) / 2.0),
        HPos::Center,
        label,
    )?;
    if let Some(t) = &p.title {
        let base = plot.y0 - sz.gap - DESC * sz.title - sz.gap * 0.5;
        cv.text(
            t,
            ((plot.x0 + plot.x1) / 2.0, base),
            HPos::Center,
            Ink::new(sz.title, INK),
        )?;
    }
    if p.is_empty() {
        let size = 15.0 * u;
        let cy = (plot.y0 + plot.y1) / 2.0;
        let (cx, half) = (
            (plot.x0 + plot.x1) / 2.0,
            cv.text_width("no data", size, false)? / 2.0 + 6.0 * u,
        );
        cv.fill_rect(
            cx - half,
            cy - 0.6 * size,
            cx + half,
            cy + 0.6 * size,
            rgba(WHITE_C, 0.9),
        )?;
        cv.text(
            "no data",
            (cx, cy + CAP * size / 2.0),
            HPos::Center,
            Ink::new(size, NOTE),
        )?;
        obstacles.push((cx, cy));
    }
    if p.legend != LegendPos::None && p.legend_needed {
        draw_legend(cv, p, plot, &sz, u, &obstacles)?;
    }
    Ok(())
}

fn map_x(s: &Scale, v: f64, plot: Rect) -> f64 {
    if s.log && v <= 0.0 {
        return plot.x0 - 1e5;
    }
    plot.x0 + s.frac(v) * (plot.x1 - plot.x0)
}

fn map_y(s: &Scale, v: f64, plot: Rect) -> f64 {
    if s.log && v <= 0.0 {
        return plot.y1 + 1e5;
    }
    plot.y1 - s.frac(v) * (plot.y1 - plot.y0)
}

/// A vertical error bar (x, y_low_px, y_high_px) with caps of width `cap`.
fn error_bar<DB: DrawingBackend>(
    cv: &Canvas<'_, DB>,
    (x, ya, yb): (f64, f64, f64),
    cap: f64,
    c: Rgb,
    u: f64,
    plot: Rect,
) -> R {
    let (t, b) = (ya.min(yb).max(plot.y0), ya.max(yb).min(plot.y1));
    if t >= b || x < plot.x0 || x > plot.x1 {
        return Ok(());
    }
    let col = rgba(c, 1.0);
    cv.vline(x, t, b, 1.5 * u, col)?;
    if ya.min(yb) >= plot.y0 {
        cv.hline(x - cap / 2.0, x + cap / 2.0, t, 1.5 * u, col)?;
    }
    if ya.max(yb) <= plot.y1 {
        cv.hline(x - cap / 2.0, x + cap / 2.0, b, 1.5 * u, col)?;
    }
    Ok(())
}

fn draw_bars<DB: DrawingBackend>(
    cv: &Canvas<'_, DB>,
    p: &PPanel,
    plot: Rect,
    u: f64,
    obstacles: &mut Vec<(f64, f64)>,
) -> R {
    let m = p.series.len().max(1) as f64;
    let stacked = p.kind == Kind::StackedBar;
    let base = if p.y.log {
        p.y.lo
    } else {
        0.0f64.clamp(p.y.lo, p.y.hi)
    };
    let n = p.categories.len();
    let (mut pos, mut neg) = (vec![0.0f64; n], vec![0.0f64; n]);
    for (j, s) in p.series.iter().enumerate() {
        for pt in &s.points {
            let c = pt.x as usize;
            let (x0, x1, y0, y1) = if stacked {
                let acc = if pt.y >= 0.0 {
                    &mut pos[c]
                } else {
                    &mut neg[c]
                };
                let from = *acc;
                *acc += pt.y;
                (
                    pt.x - 0.4,
                    pt.x + 0.4,
                    if p.y.log && from == 0.0 { base } else { from },
                    *acc,
                )
            } else {
                let w = 0.8 / m;
                let l = pt.x - 0.4 + j as f64 * w;
                (l, l + w, base, pt.y)
            };
            let (a, b) = (map_x(&p.x, x0, plot), map_x(&p.x, x1, plot));
            let (t, bt) = (map_y(&p.y, y0.max(y1), plot), map_y(&p.y, y0.min(y1), plot));
            let (t, bt) = (t.clamp(plot.y0, plot.y1), bt.clamp(plot.y0, plot.y1));
            cv.fill_rect(a, t, b, bt, rgba(s.style.color, 1.0))?;
            let mut yy = t;
            while yy <= bt {
                let mut xx = a;
                while xx <= b {
                    obstacles.push((xx, yy));
                    xx += 4.0;
                }
                yy += 4.0;
            }
            if let (Some(band), false) = (pt.band, stacked) {
                let cx = (a + b) / 2.0;
                let top = pt.y;
                let ends = (map_y(&p.y, top - band, plot), map_y(&p.y, top + band, plot));
                error_bar(cv, (cx, ends.0, ends.1), (b - a) * 0.3, ERRBAR, u, plot)?;
            }
        }
    }
    Ok(())
}

/// One legend row.
struct Entry<'a> {
    label: &'a str,
    style: Style,
    /// A filled box (bars) instead of a line sample.
    patch: bool,
    /// Draw the line sample (not for point series).
    line: bool,
}

fn draw_legend<DB: DrawingBackend>(
    cv: &Canvas<'_, DB>,
    p: &PPanel,
    plot: Rect,
    sz: &Sizes,
    u: f64,
    obstacles: &[(f64, f64)],
) -> R {
    let bars = matches!(p.kind, Kind::Bar | Kind::StackedBar);
    let mut entries: Vec<Entry<'_>> = p
        .refs
        .iter()
        .map(|r| Entry {
            label: &r.label,
            style: r.style,
            patch: false,
            line: true,
        })
        .collect();
    entries.extend(p.series.iter().map(|s| Entry {
        label: &s.name,
        style: Style {
            marker: s.style.marker || p.kind == Kind::Point,
            ..s.style
        },
        patch: bars,
        line: p.kind != Kind::Point,
    }));
    if entries.is_empty() {
        return Ok(());
    }
    // Shrink the font (down to 70%) when the longest label would not fit.
    let mut size = sz.legend;
    let mut text_w = 0.0f64;
    for e in &entries {
        text_w = text_w.max(cv.text_width(e.label, size, false)?);
    }
    let (glyph, gap, padx, pady) = (30.0 * u, 7.0 * u, 8.0 * u, 6.0 * u);
    let avail = (plot.x1 - plot.x0) - 2.0 * 8.0 * u - glyph - gap - 2.0 * padx;
    if text_w > avail && avail > 0.0 {
        let f = (avail / text_w).max(0.7);
        size *= f;
        text_w *= f;
    }
    let row = 1.45 * size;
    let bw = 2.0 * padx + glyph + gap + text_w;
    let bh = 2.0 * pady + row * entries.len() as f64;
    let inset = 8.0 * u;
    let place = |pos: LegendPos| -> (f64, f64) {
        let xl = plot.x0 + inset;
        let xr = plot.x1 - inset - bw;
        let xc = (plot.x0 + plot.x1 - bw) / 2.0;
        let yt = plot.y0 + inset;
        let yb = plot.y1 - inset - bh;
        match pos {
            LegendPos::UpperLeft => (xl, yt),
            LegendPos::LowerLeft => (xl, yb),
            LegendPos::LowerRight => (xr, yb),
            LegendPos::UpperCenter => (xc, yt),
            LegendPos::LowerCenter => (xc, yb),
            _ => (xr, yt),
        }
    };
    let (x, y) = if p.legend == LegendPos::Best {
        // matplotlib's "best": the named spots first, then a grid over the
        // plot; the first spot covering the fewest data samples wins.
        let mut spots: Vec<(f64, f64)> = [
            LegendPos::UpperRight,
            LegendPos::UpperLeft,
            LegendPos::LowerLeft,
            LegendPos::LowerRight,
            LegendPos::UpperCenter,
            LegendPos::LowerCenter,
        ]
        .into_iter()
        .map(place)
        .collect();
        let (x_lo, y_lo) = place(LegendPos::UpperLeft);
        let (x_hi, y_hi) = place(LegendPos::LowerRight);
        for fy in [4, 3, 5, 2, 6, 1, 7] {
            for fx in [4, 0, 2, 3, 1] {
                spots.push((
                    x_lo + (x_hi - x_lo) * fx as f64 / 4.0,
                    y_lo + (y_hi - y_lo) * fy as f64 / 8.0,
                ));
            }
        }
        let mut best = (usize::MAX, spots[0]);
        for (x, y) in spots {
            let r = Rect {
                x0: x - 4.0 * u,
                y0: y - 4.0 * u,
                x1: x + bw + 4.0 * u,
                y1: y + bh + 4.0 * u,
            };
            let score = obstacles.iter().filter(|q| r.contains(**q)).count();
            if score < best.0 {
                best = (score, (x, y));
            }
        }
        best.1
    } else {
        place(p.legend)
    };
    let x = x.max(plot.x0 + 1.0).round();
    let y = y.max(plot.y0 + 1.0).round();
    let (bw, bh) = (bw.round(), bh.round());
    cv.fill_rect(x, y, x + bw, y + bh, rgba(WHITE_C, 0.85))?;
    for (x0, y0, x1, y1) in [
        (x, y, x + bw, y + 1.0),
        (x, y + bh - 1.0, x + bw, y + bh),
        (x, y, x + 1.0, y + bh),
        (x + bw - 1.0, y, x + bw, y + bh),
    ] {
        cv.fill_rect(x0, y0, x1, y1, rgba(LEGEND_EDGE, 1.0))?;
    }
    for (i, e) in entries.iter().enumerate() {
        let cy = y + pady + row * (i as f64 + 0.5);
        let (g0, g1) = (x + padx, x + padx + glyph);
        let col = rgba(e.style.color, 1.0);
        if e.patch {
            let hh = 0.7 * size * 0.5;
            cv.fill_rect(g0 + glyph * 0.2, cy - hh, g1 - glyph * 0.2, cy + hh, col)?;
        } else {
            let lw = 2.5 * u;
            if !e.line {
            } else if e.style.dashed {
                for d in dashes(&[(g0, cy), (g1, cy)], 7.0 * u, 3.5 * u) {
                    cv.hline(d[0].0, d[d.len() - 1].0, cy, lw, col)?;
                }
            } else {
                cv.hline(g0, g1, cy, lw, col)?;
            }
            if e.style.marker {
                cv.circle(((g0 + g1) / 2.0, cy), 5.0 * u, e.style.color)?;
            }
        }
        cv.text(
            e.label,
            (g1 + gap, cy + CAP * size / 2.0),
            HPos::Left,
            Ink::new(size, INK),
        )?;
    }
    Ok(())
}
