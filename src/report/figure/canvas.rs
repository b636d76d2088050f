//! The drawing surface: plotters backends (SVG string, RGB bitmap), font
//! registration, and primitives in output-pixel coordinates.
//!
//! Layout is computed in output pixels (`f64`) and converted to backend
//! pixels at the last moment. PNGs are drawn at 2-3x resolution and box-
//! filtered down, which anti-aliases lines, markers and text; axis-aligned
//! rectangles are snapped to whole output pixels so grid lines stay crisp.

use super::draw::render;
use super::font;
use super::prepare::{Prepared, Rgb};
use super::{FigureError, png as png_enc};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontDesc, FontFamily, FontStyle, FontTransform, RGBAColor, ShapeStyle};
use std::sync::OnceLock;

/// Registers DejaVu Sans (normal and bold) as `sans-serif`, once.
fn fonts() -> Result<(), FigureError> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .map_err(|_| "DejaVu Sans (regular) is not a valid font".to_string())?;
        plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold())
            .map_err(|_| "DejaVu Sans (bold) is not a valid font".to_string())
    })
    .clone()
    .map_err(FigureError::Font)
}

fn de<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> FigureError {
    FigureError::Draw(e.to_string())
}

/// The figure as an SVG document.
pub(super) fn svg(fig: &Prepared) -> Result<String, FigureError> {
    fonts()?;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (fig.width, fig.height)).into_drawing_area();
        render(
            &Canvas {
                area: &root,
                k: 1.0,
                bitmap: false,
            },
            fig,
        )?;
        root.present().map_err(de)?;
    }
    Ok(out)
}

/// The figure as a PNG file.
pub(super) fn png(fig: &Prepared) -> Result<Vec<u8>, FigureError> {
    fonts()?;
    let pixels = fig.width as u64 * fig.height as u64;
    let k: u32 = if pixels <= 2_000_000 {
        3
    } else if pixels <= 6_000_000 {
        2
    } else {
        1
    };
    let (w, h) = (fig.width * k, fig.height * k);
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        render(
            &Canvas {
                area: &root,
                k: k as f64,
                bitmap: true,
            },
            fig,
        )?;
        root.present().map_err(de)?;
    }
    let small = downsample(&buf, w as usize, h as usize, k as usize);
    png_enc::encode_rgb(fig.width, fig.height, &small)
        .ok_or_else(|| FigureError::Draw("PNG encoding: pixel buffer has the wrong size".into()))
}

/// Box filter: each output pixel is the rounded mean of a k×k block.
fn downsample(buf: &[u8], w: usize, h: usize, k: usize) -> Vec<u8> {
    if k == 1 {
        return buf.to_vec();
    }
    let (ow, oh) = (w / k, h / k);
    let n = (k * k) as u32;
    let mut out = vec![0u8; ow * oh * 3];
    for oy in 0..oh {
        for ox in 0..ow {
            for c in 0..3 {
                let mut sum = 0u32;
                for dy in 0..k {
                    let row = (oy * k + dy) * w;
                    for dx in 0..k {
                        sum += buf[(row + ox * k + dx) * 3 + c] as u32;
                    }
                }
                out[(oy * ow + ox) * 3 + c] = ((sum + n / 2) / n) as u8;
            }
        }
    }
    out
}

/// What drawing calls return.
pub(super) type R = Result<(), FigureError>;

/// A drawing area plus the output-to-backend pixel factor.
pub(super) struct Canvas<'a, DB: DrawingBackend> {
    area: &'a DrawingArea<DB, Shift>,
    k: f64,
    bitmap: bool,
}

/// `c` with opacity `a`.
pub(super) fn rgba(c: Rgb, a: f64) -> RGBAColor {
    RGBAColor(c.0, c.1, c.2, a)
}

impl<DB: DrawingBackend> Canvas<'_, DB> {
    fn px(&self, v: f64) -> i32 {
        (v * self.k).round().clamp(-1e7, 1e7) as i32
    }

    /// Filled rectangle; edges are snapped to whole output pixels.
    pub(super) fn fill_rect(&self, x0: f64, y0: f64, x1: f64, y1: f64, c: RGBAColor) -> R {
        let (a, b) = (self.px(x0.min(x1).round()), self.px(x0.max(x1).round()));
        let (t, u) = (self.px(y0.min(y1).round()), self.px(y0.max(y1).round()));
        if a == b || t == u {
            return Ok(());
        }
        let style = ShapeStyle {
            color: c,
            filled: true,
            stroke_width: 0,
        };
        self.area
            .draw(&Rectangle::new([(a, t), (b, u)], style))
            .map_err(de)
    }

    /// A horizontal line of width `w`, centred on `y`.
    pub(super) fn hline(&self, x0: f64, x1: f64, y: f64, w: f64, c: RGBAColor) -> R {
        let top = (y - w / 2.0).round();
        self.fill_rect(x0, top, x1, top + w.round().max(1.0), c)
    }

    /// A vertical line of width `w`, centred on `x`.
    pub(super) fn vline(&self, x: f64, y0: f64, y1: f64, w: f64, c: RGBAColor) -> R {
        let left = (x - w / 2.0).round();
        self.fill_rect(left, y0, left + w.round().max(1.0), y1, c)
    }

    pub(super) fn path(&self, pts: &[(f64, f64)], c: Rgb, width: f64) -> R {
        if pts.len() < 2 {
            return Ok(());
        }
        let p: Vec<(i32, i32)> = pts.iter().map(|&(x, y)| (self.px(x), self.px(y))).collect();
        let w = (width * self.k).round().max(1.0) as u32;
        let style = ShapeStyle {
            color: rgba(c, 1.0),
            filled: false,
            stroke_width: w,
        };
        self.area.draw(&PathElement::new(p, style)).map_err(de)
    }

    pub(super) fn polygon(&self, pts: &[(f64, f64)], c: RGBAColor) -> R {
        if pts.len() < 3 {
            return Ok(());
        }
        let p: Vec<(i32, i32)> = pts.iter().map(|&(x, y)| (self.px(x), self.px(y))).collect();
        let style = ShapeStyle {
            color: c,
            filled: true,
            stroke_width: 0,
        };
        self.area.draw(&Polygon::new(p, style)).map_err(de)
    }

    pub(super) fn circle(&self, (x, y): (f64, f64), r: f64, c: Rgb) -> R {
        let style = ShapeStyle {
            color: rgba(c, 1.0),
            filled: true,
            stroke_width: 0,
        };
        let r = (r * self.k).round().max(1.0) as u32;
        self.area
            .draw(&Circle::new((self.px(x), self.px(y)), r, style))
            .map_err(de)
    }

    fn font(&self, size: f64, bold: bool) -> FontDesc<'static> {
        let style = if bold {
            FontStyle::Bold
        } else {
            FontStyle::Normal
        };
        FontDesc::new(FontFamily::SansSerif, size * self.k, style)
    }

    /// Width of `s` in output pixels.
    pub(super) fn text_width(&self, s: &str, size: f64, bold: bool) -> Result<f64, FigureError> {
        if s.is_empty() {
            return Ok(0.0);
        }
        let style = self.font(size, bold).color(&BLACK);
        let (w, _) = self.area.estimate_text_size(s, &style).map_err(de)?;
        Ok(w as f64 / self.k)
    }

    /// Distance from the anchor (top of the text box) down to the baseline,
    /// which differs between plotters' glyph rasterizer and SVG's `dy`.
    fn base_offset(&self, size: f64) -> f64 {
        if self.bitmap {
            0.5 * size
        } else {
            0.613 * size
        }
    }

    /// Draws `s` with the top of its text box at `at` (backend pixels),
    /// anchored by `h` along the text direction; `up` rotates it to read
    /// bottom to top. On bitmaps, glyphs are placed one by one with their
    /// left side bearings (see `font.rs`).
    fn draw_str(&self, s: &str, at: (i32, i32), h: HPos, up: bool, ink: Ink) -> R {
        if s.is_empty() {
            return Ok(());
        }
        let font = self.font(ink.size, ink.bold);
        let font = if up {
            font.transform(FontTransform::Rotate270)
        } else {
            font
        };
        let color = RGBColor(ink.color.0, ink.color.1, ink.color.2);
        let metrics = if self.bitmap {
            font::metrics(ink.bold)
        } else {
            None
        };
        let Some(m) = metrics else {
            let style = font.color(&color).pos(Pos::new(h, VPos::Top));
            return self.area.draw_text(s, &style, at).map_err(de);
        };
        let style = font.color(&color).pos(Pos::new(HPos::Left, VPos::Top));
        let width = |t: &str| -> Result<f64, FigureError> {
            Ok(self.area.estimate_text_size(t, &style).map_err(de)?.0 as f64)
        };
        // Font units to backend pixels, from a long run of one glyph.
        let units = 64.0 * m.bearing_advance('M').1;
        let px_per_unit = if units > 0.0 {
            width(&"M".repeat(64))? / units
        } else {
            0.0
        };
        let total = width(s)?;
        let start = match h {
            HPos::Left => 0.0,
            HPos::Center => -(total / 2.0).trunc(),
            HPos::Right => -total,
        };
        let mut buf = [0u8; 4];
        for (i, ch) in s.char_indices() {
            if ch.is_whitespace() {
                continue;
            }
            let one: &str = ch.encode_utf8(&mut buf);
            // The pen position plotters would use: advances and kerning of
            // everything before this glyph.
            let pen = width(&s[..i + ch.len_utf8()])? - width(one)?;
            let lsb = (m.bearing_advance(ch).0 * px_per_unit).floor();
            let off = (start + pen + lsb) as i32;
            let pos = if up {
                (at.0, at.1 - off)
            } else {
                (at.0 + off, at.1)
            };
            self.area.draw_text(one, &style, pos).map_err(de)?;
        }
        Ok(())
    }

    /// Horizontal text with its baseline at `base`, anchored at `x` by `h`.
    pub(super) fn text(&self, s: &str, (x, base): (f64, f64), h: HPos, ink: Ink) -> R {
        let y = base - self.base_offset(ink.size);
        self.draw_str(s, (self.px(x), self.px(y)), h, false, ink)
    }

    /// Text reading bottom to top with its baseline at `bx` (letter tops
    /// face left), centred on `y` (`h` = Center) or ending at `y` and
    /// hanging down from it (`h` = Right).
    pub(super) fn text_up(&self, s: &str, (bx, y): (f64, f64), h: HPos, ink: Ink) -> R {
        let x = bx - self.base_offset(ink.size);
        self.draw_str(s, (self.px(x), self.px(y)), h, true, ink)
    }
}

/// How text is set: size (output pixels), weight and colour.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ink {
    pub size: f64,
    pub bold: bool,
    pub color: Rgb,
}

impl Ink {
    /// Regular text.
    pub(super) fn new(size: f64, color: Rgb) -> Ink {
        Ink {
            size,
            bold: false,
            color,
        }
    }
}
