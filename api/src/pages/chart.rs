//! Small line charts drawn on the server as inline SVG (no script): the instance page's restore
//! duration and backup size over time. A chart is numbers and labels only; the template escapes
//! the labels, and every coordinate is a number this module formats.

use chrono::{DateTime, Utc};
use restorable_projections::backups::BackupRow;

/// The most points a chart draws (the newest).
pub const CHART_POINTS: usize = 90;

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 140.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;

/// One chart ready for the template.
pub struct Chart {
    /// What it shows (`Restore duration`), also the SVG's accessible title.
    pub title: &'static str,
    /// The polyline's `points` attribute (`x,y x,y ...`).
    pub points: String,
    /// Each point's circle: `(x, y, label)` (the label is the circle's tooltip).
    pub dots: Vec<(String, String, String)>,
    /// The y axis: the largest value's label (at the top) and the smallest's (at the bottom).
    pub y_max: String,
    /// See [`Chart::y_max`].
    pub y_min: String,
    /// The x axis: the first and last times.
    pub x_first: String,
    /// See [`Chart::x_first`].
    pub x_last: String,
    /// The SVG's size.
    pub width: u32,
    /// See [`Chart::width`].
    pub height: u32,
    /// The plot's edges: left and right x, top and bottom (the x axis) y.
    pub left: u32,
    /// See [`Chart::left`].
    pub right: u32,
    /// See [`Chart::left`].
    pub top: u32,
    /// See [`Chart::left`].
    pub base: u32,
}

/// The restore duration (seconds) of each restore-tested copy among `rows`, if any.
pub fn restore_durations(rows: &[BackupRow]) -> Option<Chart> {
    let points: Vec<(DateTime<Utc>, f64)> = rows
        .iter()
        .filter_map(|r| Some((r.restore_tested_at?, r.restore_ms? as f64 / 1000.0)))
        .collect();
    chart("Restore duration", &points, |v| format!("{v:.1} s"))
}

/// The size (MiB) of each stored copy among `rows`, if any.
pub fn backup_sizes(rows: &[BackupRow]) -> Option<Chart> {
    let points: Vec<(DateTime<Utc>, f64)> = rows
        .iter()
        .filter_map(|r| Some((r.captured_at?, r.size? as f64 / (1024.0 * 1024.0))))
        .collect();
    chart("Backup size", &points, |v| format!("{v:.2} MiB"))
}

/// A chart of the newest [`CHART_POINTS`] of `points` (any order), oldest on the left; `None`
/// without points. Values that are not finite are left out.
fn chart(
    title: &'static str,
    points: &[(DateTime<Utc>, f64)],
    label: impl Fn(f64) -> String,
) -> Option<Chart> {
    let mut points: Vec<(DateTime<Utc>, f64)> = points
        .iter()
        .copied()
        .filter(|(_, v)| v.is_finite())
        .collect();
    points.sort_by_key(|(at, _)| *at);
    let points = &points[points.len().saturating_sub(CHART_POINTS)..];
    let (first, last) = (points.first()?.0, points.last()?.0);
    let (low, high) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, v)| {
            (lo.min(*v), hi.max(*v))
        });
    // A flat series sits mid-height; a span of zero time puts every point at the left.
    let floor = if high > low { low } else { low - 1.0 };
    let ceiling = if high > low { high } else { high + 1.0 };
    let span_ms = (last - first).num_milliseconds().max(1) as f64;
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let place = |(at, value): &(DateTime<Utc>, f64)| {
        let x = LEFT + plot_w * ((*at - first).num_milliseconds() as f64 / span_ms);
        let y = TOP + plot_h * (1.0 - (value - floor) / (ceiling - floor));
        (format!("{x:.1}"), format!("{y:.1}"))
    };
    let dots: Vec<(String, String, String)> = points
        .iter()
        .map(|point| {
            let (x, y) = place(point);
            let at = point.0.format("%Y-%m-%d %H:%M");
            (x, y, format!("{at}: {}", label(point.1)))
        })
        .collect();
    Some(Chart {
        title,
        points: dots
            .iter()
            .map(|(x, y, _)| format!("{x},{y}"))
            .collect::<Vec<_>>()
            .join(" "),
        dots,
        y_max: label(high),
        y_min: label(low),
        x_first: first.format("%Y-%m-%d").to_string(),
        x_last: last.format("%Y-%m-%d").to_string(),
        width: WIDTH as u32,
        height: HEIGHT as u32,
        left: LEFT as u32,
        right: (WIDTH - RIGHT) as u32,
        top: TOP as u32,
        base: (HEIGHT - BOTTOM) as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day(n: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, n, 12, 0, 0)
            .single()
            .expect("a date")
    }

    #[test]
    fn points_run_oldest_left_to_newest_right_and_high_values_up() {
        let chart = chart(
            "t",
            &[(day(3), 30.0), (day(1), 10.0), (day(2), 20.0)],
            |v| format!("{v}"),
        )
        .expect("a chart");
        assert_eq!(chart.points, "60.0,116.0 325.0,63.0 590.0,10.0");
        assert_eq!((chart.y_min.as_str(), chart.y_max.as_str()), ("10", "30"));
        assert_eq!(
            (chart.x_first.as_str(), chart.x_last.as_str()),
            ("2026-11-01", "2026-11-03")
        );
    }

    #[test]
    fn only_the_newest_points_are_drawn_and_odd_series_still_draw() {
        let many: Vec<_> = (0..200)
            .map(|n| (day(1) + chrono::Duration::hours(n), f64::from(n as u32)))
            .collect();
        let chart = chart("t", &many, |v| format!("{v}")).expect("a chart");
        assert_eq!(chart.dots.len(), CHART_POINTS);
        assert_eq!(chart.y_min, "110");
        let flat = chart_of_one();
        assert_eq!(flat.points, "60.0,63.0");
        assert!(super::chart("t", &[(day(1), f64::NAN)], |v| format!("{v}")).is_none());
        assert!(super::chart("t", &[], |v| format!("{v}")).is_none());
    }

    fn chart_of_one() -> Chart {
        chart("t", &[(day(1), 5.0)], |v| format!("{v}")).expect("a chart")
    }
}
