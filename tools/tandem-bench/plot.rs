//! `--plot FILE.svg`: throughput and p99 latency per second over the run.
//!
//! Two panels sharing the time axis: transactions per second on top, p99
//! latency (ms) below. Events are vertical lines across both panels: red for
//! connection errors, orange for primary changes, blue (with the label) for user
//! marks (`--mark 10s:kill`). A failover shows as a dip to zero tps between a red
//! line and the recovery. Each second is drawn as a flat step over
//! `[second, second + 1)`, so an empty second is visibly zero for its whole width.
//! Pauses (windows without any ack, `--pause-threshold-ms`) are shaded light red
//! across both panels, at least `PAUSE_WIDTH_MIN_PX` wide so a 20 ms pause in a
//! long run stays visible, and labelled with their length when there are few.
//!
//! Uses plotters' SVG backend without font support (no fontconfig on the target
//! machines): text is emitted as SVG `<text>` and laid out by the viewer.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use crate::report::Report;
use crate::stats::{Event, EventKind};

const WIDTH_PX: u32 = 1000;
const HEIGHT_PX: u32 = 700;
/// Narrowest a pause is drawn, in pixels of the plot's width.
const PAUSE_WIDTH_MIN_PX: f64 = 2.0;
/// Pauses labelled with their length; with more the labels would overlap.
const PAUSE_LABELS_MAX: usize = 8;

pub fn write_svg(report: &Report, path: &Path) -> anyhow::Result<()> {
    let fail = |e: &dyn std::fmt::Display| anyhow!("cannot draw {}: {e}", path.display());
    let root = SVGBackend::new(path, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let (upper, lower) = root.split_vertically(HEIGHT_PX / 2);

    let x_max = report
        .series
        .last()
        .map_or(1.0, |p| p.second as f64 + 1.0)
        .max(report.events.iter().map(|e| e.t_s).fold(0.0, f64::max))
        .max(1.0);
    let events = distinct_events(&report.events);
    let width_min_s = x_max * PAUSE_WIDTH_MIN_PX / f64::from(WIDTH_PX);
    let pauses: Vec<Shade> = report
        .pauses
        .iter()
        .map(|p| Shade {
            from_s: p.at_s,
            to_s: (p.at_s + p.ms / 1000.0).max(p.at_s + width_min_s),
            label: (report.pauses.len() <= PAUSE_LABELS_MAX)
                .then(|| format!("pause {:.0} ms", p.ms)),
        })
        .collect();

    let tps = step_runs(report.series.iter().map(|p| (p.second, Some(p.tps))));
    let title = format!(
        "{}: throughput ({} clients, {} threads)",
        report.transaction_type, report.clients, report.threads
    );
    draw_panel(&upper, &title, "tps", x_max, &tps, &events, &pauses).map_err(|e| fail(&e))?;

    // A second without transactions has no latency: the line breaks there
    // instead of dropping to a flattering zero.
    let p99 = step_runs(
        report
            .series
            .iter()
            .map(|p| (p.second, (p.transactions > 0).then_some(p.latency_p99_ms))),
    );
    draw_panel(
        &lower,
        "p99 latency per second",
        "p99 latency (ms)",
        x_max,
        &p99,
        &events,
        &pauses,
    )
    .map_err(|e| fail(&e))?;

    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    y_desc: &str,
    x_max: f64,
    runs: &[Vec<(f64, f64)>],
    events: &[&Event],
    pauses: &[Shade],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let y_max = runs
        .iter()
        .flatten()
        .map(|p| p.1)
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc(y_desc)
        .y_label_formatter(&|v| {
            if y_max >= 100.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.3}")
            }
        })
        .draw()?;
    let shade = RGBColor(220, 40, 40).mix(0.2).filled();
    for p in pauses {
        let corners = [(p.from_s, 0.0), (p.to_s, y_max)];
        chart.draw_series(std::iter::once(Rectangle::new(corners, shade)))?;
        if let Some(label) = &p.label {
            let at = (p.to_s, y_max * 0.5);
            chart.draw_series(std::iter::once(Text::new(
                label.clone(),
                at,
                ("sans-serif", 12).into_font().color(&RED),
            )))?;
        }
    }
    for run in runs {
        chart.draw_series(LineSeries::new(run.iter().copied(), BLUE.stroke_width(2)))?;
    }
    for (i, event) in events.iter().enumerate() {
        let color = match event.kind {
            EventKind::ConnectionError => RED,
            EventKind::PrimaryChange => RGBColor(255, 140, 0),
            EventKind::Mark => RGBColor(30, 30, 200),
        };
        let line = vec![(event.t_s, 0.0), (event.t_s, y_max)];
        chart.draw_series(std::iter::once(PathElement::new(
            line,
            color.stroke_width(1),
        )))?;
        let label = match event.kind {
            EventKind::ConnectionError => "conn error".to_string(),
            EventKind::PrimaryChange => "new primary".to_string(),
            EventKind::Mark => event.detail.clone(),
        };
        // Stagger labels so events close in time stay readable.
        let at = (event.t_s, y_max * (0.97 - 0.06 * (i % 4) as f64));
        chart.draw_series(std::iter::once(Text::new(label, at, ("sans-serif", 12))))?;
    }
    Ok(())
}

/// A pause as drawn: seconds since the run's start.
struct Shade {
    from_s: f64,
    to_s: f64,
    label: Option<String>,
}

/// Step lines: each second's value held over the whole second; a `None` second
/// ends the current run of points.
fn step_runs(points: impl Iterator<Item = (u64, Option<f64>)>) -> Vec<Vec<(f64, f64)>> {
    let mut runs = vec![Vec::new()];
    for (second, value) in points {
        match (value, runs.last_mut()) {
            (Some(v), Some(run)) => run.extend([(second as f64, v), (second as f64 + 1.0, v)]),
            (None, Some(run)) if run.is_empty() => {}
            _ => runs.push(Vec::new()),
        }
    }
    runs.retain(|r| !r.is_empty());
    runs
}

/// One line per event kind and tenth of a second: all clients see the same
/// failure at once, and fifty stacked lines say no more than one.
fn distinct_events(events: &[Event]) -> Vec<&Event> {
    let mut seen = std::collections::HashSet::new();
    events
        .iter()
        .filter(|e| seen.insert((e.kind as u8, (e.t_s * 10.0) as i64, mark_detail(e))))
        .collect()
}

fn mark_detail(e: &Event) -> &str {
    if e.kind == EventKind::Mark {
        &e.detail
    } else {
        ""
    }
}
