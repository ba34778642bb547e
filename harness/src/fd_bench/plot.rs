//! The PNG: median dump time against table size, one line per method, both axes logarithmic,
//! with each size's minimum as a dot. Text needs a font: plotters' `ab_glyph` renders one read
//! at run time (DejaVu Sans, Debian's fonts-dejavu-core); without one the plot is drawn with no
//! text at all and the report's `plot.legend` says which color is which method.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use super::report::{PlotInfo, Report};
use super::row::Method;

const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Register a sans-serif font once; whether one was found.
fn font() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        FONTS.iter().any(|p| match std::fs::read(p) {
            Ok(bytes) => {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
            }
            Err(_) => false,
        })
    })
}

fn color(m: Method) -> RGBColor {
    match m {
        Method::Crib => RGBColor(0xd6, 0x27, 0x28),
        Method::IterTaskFile => RGBColor(0x1f, 0x77, 0xb4),
        Method::Procfs => RGBColor(0x2c, 0xa0, 0x2c),
        Method::Lsof => RGBColor(0x94, 0x67, 0xbd),
    }
}

fn color_name(m: Method) -> &'static str {
    match m {
        Method::Crib => "red",
        Method::IterTaskFile => "blue",
        Method::Procfs => "green",
        Method::Lsof => "purple",
    }
}

/// (fds, median ms, min ms) of one method at one size.
type Point = (f64, f64, f64);

#[derive(Debug, thiserror::Error)]
#[error("drawing {path}: {why}")]
pub struct PlotError {
    pub path: String,
    pub why: String,
}

/// Draw `report` to `path` (PNG, 1000x700).
pub fn draw(report: &Report, path: &Path) -> Result<PlotInfo, PlotError> {
    let labels = font();
    let err = |why: String| PlotError {
        path: path.display().to_string(),
        why,
    };
    let points: Vec<(Method, Vec<Point>)> = Method::ALL
        .iter()
        .map(|m| {
            let pts = report
                .sizes
                .iter()
                .filter_map(|s| {
                    let r = s.methods.iter().find(|r| r.method == *m)?;
                    Some((f64::from(s.fds), r.median_ms.max(1e-3), r.min_ms.max(1e-3)))
                })
                .collect();
            (*m, pts)
        })
        .collect();
    let all = points.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, med, mn) in all {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*mn);
        y1 = y1.max(*med);
    }
    if x0 > x1 {
        return Err(err("no results to plot".into()));
    }
    let xr = (x0 / 1.5)..(x1 * 1.5);
    let yr = (y0 / 2.0)..(y1 * 2.0);
    let root = BitMapBackend::new(path, (1000, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut b = ChartBuilder::on(&root);
    b.margin(20);
    if labels {
        b.caption(
            format!(
                "fd dump time vs table size ({}, {}, {})",
                report.machine.kernel_release,
                report.machine.flavor.as_deref().unwrap_or("?"),
                report.machine.accel
            ),
            ("sans-serif", 22),
        )
        .x_label_area_size(50)
        .y_label_area_size(70);
    }
    let mut chart = b
        .build_cartesian_2d(xr.log_scale(), yr.log_scale())
        .map_err(|e| err(e.to_string()))?;
    let mut mesh = chart.configure_mesh();
    if labels {
        mesh.x_desc("fds in the target")
            .y_desc("median ms per dump (dots: min)")
            .label_style(("sans-serif", 16));
    } else {
        mesh.x_labels(0).y_labels(0).disable_axes();
    }
    mesh.draw().map_err(|e| err(e.to_string()))?;
    for (m, pts) in &points {
        let c = color(*m);
        let series = chart
            .draw_series(LineSeries::new(
                pts.iter().map(|(x, med, _)| (*x, *med)),
                c.stroke_width(3),
            ))
            .map_err(|e| err(e.to_string()))?;
        if labels {
            series
                .label(m.as_str())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(3)));
        }
        chart
            .draw_series(
                pts.iter()
                    .map(|(x, _, mn)| Circle::new((*x, *mn), 4, c.filled())),
            )
            .map_err(|e| err(e.to_string()))?;
    }
    if labels {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 16))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| err(e.to_string()))?;
    }
    root.present().map_err(|e| err(e.to_string()))?;
    let legend = Method::ALL
        .iter()
        .map(|m| format!("{}: {}", color_name(*m), m.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(PlotInfo {
        path: path.display().to_string(),
        labels,
        legend: format!(
            "log-log: x fds in the target, y median ms per dump (lines), min ms (dots); {legend}"
        ),
    })
}
