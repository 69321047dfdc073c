//! Multi-object tracking, SORT-style: every frame, each track's box is moved ahead by its own
//! constant-velocity Kalman filter ([`kalman`]), tracks and detections are paired by IoU with
//! an optimal assignment ([`assignment`]), and the pairing drives each track's life:
//!
//! - an unmatched detection starts a *tentative* track, which has no id and is never reported;
//!   one miss ends it (a one-frame false positive leaves no trace);
//! - after `min_hits` consecutive matches it is *confirmed*: it gets the next id (ids count up
//!   from 1 and are never reused) and a [`TrackEventKind::New`] event;
//! - a confirmed track reports [`TrackEventKind::Update`] in every frame it is matched and
//!   [`TrackEventKind::Lost`] (with its predicted box) in every frame it is not;
//! - after more than `max_age` consecutive misses it reports [`TrackEventKind::End`] and is gone.
//!
//! Time comes from the frames' timestamps, so velocities are pixels per second and a dropped
//! frame is a longer prediction, not a wrong one.

pub mod assignment;
pub mod kalman;

use crate::decode::{BoundingBox, Detection};
use kalman::{BoxFilter, KalmanParams};
use serde::{Deserialize, Serialize};

/// The `[tracker]` section of a board config.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// Consecutive matches before a track is confirmed, given an id and reported.
    pub min_hits: u32,
    /// Consecutive frames a confirmed track may go unmatched, coasting on its prediction,
    /// before it ends.
    pub max_age: u32,
    /// Least IoU between a track's predicted box and a detection for them to be paired.
    pub iou_threshold: f32,
    /// Pair tracks only with detections of their own class.
    pub per_class: bool,
}

impl Default for TrackerConfig {
    fn default() -> TrackerConfig {
        // SORT's published defaults (min_hits 3, max_age 1 at 30 fps) lose people behind a
        // lamp post; a second of coasting at camera rates keeps them.
        TrackerConfig {
            min_hits: 3,
            max_age: 30,
            iou_threshold: 0.3,
            per_class: true,
        }
    }
}

/// Longest coasting the config accepts: far beyond any sensible value, low enough that a typo
/// (an extra zero or three) is caught.
const MAX_AGE_LIMIT: u32 = 10_000;

impl TrackerConfig {
    /// Checks the values; on error, the `tracker.*` key and what is wrong with it.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.min_hits == 0 {
            return Err((
                "tracker.min_hits",
                "must be at least 1 (1 reports a track on its first detection)".into(),
            ));
        }
        if self.max_age > MAX_AGE_LIMIT {
            return Err((
                "tracker.max_age",
                format!(
                    "is {}; it counts frames, at most {MAX_AGE_LIMIT} (30 ≈ 1 s at 30 fps)",
                    self.max_age
                ),
            ));
        }
        let t = self.iou_threshold;
        if !(t > 0.0 && t <= 1.0) {
            return Err((
                "tracker.iou_threshold",
                format!("is {t}; it must be above 0 and at most 1 (0.3 is usual)"),
            ));
        }
        Ok(())
    }
}

/// What happened to a track in one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackEventKind {
    /// Confirmed in this frame; its id is new.
    New,
    /// Matched again.
    Update,
    /// Not matched in this frame; the box is the prediction.
    Lost,
    /// Given up; the id will not be used again.
    End,
}

/// One track's state after a frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackEvent {
    pub track_id: u32,
    pub kind: TrackEventKind,
    /// Class of the latest matched detection.
    pub class_id: usize,
    /// Score of the latest matched detection.
    pub score: f32,
    /// The filtered box (predicted when the track was not matched).
    pub bbox: BoundingBox,
    /// Velocity of the box centre, pixels per second.
    pub velocity_px_s: [f32; 2],
}

/// One object being followed.
#[derive(Debug, Clone)]
pub struct Track {
    /// `None` while tentative.
    id: Option<u32>,
    class_id: usize,
    score: f32,
    filter: BoxFilter,
    /// Consecutive matches.
    hits: u32,
    /// Consecutive misses.
    misses: u32,
}

impl Track {
    /// The id, once confirmed.
    pub fn id(&self) -> Option<u32> {
        self.id
    }

    pub fn class_id(&self) -> usize {
        self.class_id
    }

    pub fn score(&self) -> f32 {
        self.score
    }

    pub fn bbox(&self) -> BoundingBox {
        self.filter.bbox()
    }

    pub fn velocity_px_s(&self) -> [f32; 2] {
        self.filter.velocity_px_s()
    }

    /// Consecutive frames without a match (0 when seen in the latest frame).
    pub fn misses(&self) -> u32 {
        self.misses
    }

    fn event(&self, id: u32, kind: TrackEventKind) -> TrackEvent {
        TrackEvent {
            track_id: id,
            kind,
            class_id: self.class_id,
            score: self.score,
            bbox: self.filter.bbox(),
            velocity_px_s: self.filter.velocity_px_s(),
        }
    }
}

/// What one call to [`Tracker::update`] produced.
#[derive(Debug, Clone, Copy)]
pub struct TrackUpdate<'a> {
    /// One event per confirmed track (and per track that ended), by track id.
    pub events: &'a [TrackEvent],
    /// For each detection passed in, in order, the id of the confirmed track it belongs to.
    pub track_ids: &'a [Option<u32>],
}

/// The SORT-style tracker. Feed it every processed frame's detections, in time order.
#[derive(Debug, Clone)]
pub struct Tracker {
    config: TrackerConfig,
    params: KalmanParams,
    tracks: Vec<Track>,
    next_id: u32,
    last_timestamp_us: Option<u64>,
    events: Vec<TrackEvent>,
    track_ids: Vec<Option<u32>>,
    /// Allowed track–detection pairs and their costs, kept between frames to reuse the memory.
    pairs: Vec<(usize, usize, f64)>,
}

impl Tracker {
    pub fn new(config: TrackerConfig) -> Tracker {
        Tracker::with_params(config, KalmanParams::default())
    }

    /// A tracker with non-default motion and noise parameters.
    pub fn with_params(config: TrackerConfig, params: KalmanParams) -> Tracker {
        Tracker {
            config,
            params,
            tracks: Vec::new(),
            next_id: 1,
            last_timestamp_us: None,
            events: Vec::new(),
            track_ids: Vec::new(),
            pairs: Vec::new(),
        }
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// Every live track, tentative ones included (their `id()` is `None`).
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// Drops every track (e.g. after the camera was replugged); ids keep counting up.
    pub fn reset(&mut self) {
        self.tracks.clear();
        self.last_timestamp_us = None;
        self.events.clear();
        self.track_ids.clear();
    }

    /// Advances to `timestamp_us` (the frame's capture time, µs, monotonic) and folds in the
    /// frame's detections.
    pub fn update(&mut self, timestamp_us: u64, detections: &[Detection]) -> TrackUpdate<'_> {
        let dt_s = match self.last_timestamp_us {
            Some(last) if timestamp_us >= last => (timestamp_us - last) as f64 / 1e6,
            Some(last) => {
                log::warn!(
                    "tracker: frame at {timestamp_us} µs is older than the previous one ({last} µs); \
                     treating it as simultaneous"
                );
                0.0
            }
            None => 0.0,
        };
        self.last_timestamp_us = Some(self.last_timestamp_us.unwrap_or(0).max(timestamp_us));
        for track in &mut self.tracks {
            track.filter.predict(dt_s, &self.params);
        }

        let matches = self.associate(detections);

        self.events.clear();
        self.track_ids.clear();
        self.track_ids.resize(detections.len(), None);
        let mut matched_detection = vec![false; detections.len()];
        let mut keep = vec![true; self.tracks.len()];
        for (t, track) in self.tracks.iter_mut().enumerate() {
            match matches.get(t).copied().flatten() {
                Some(d) => {
                    let det = &detections[d];
                    matched_detection[d] = true;
                    track.filter.update(&det.bbox, &self.params);
                    track.hits = track.hits.saturating_add(1);
                    track.misses = 0;
                    track.class_id = det.class_id;
                    track.score = det.score;
                    let kind = match track.id {
                        Some(_) => TrackEventKind::Update,
                        None if track.hits >= self.config.min_hits => {
                            track.id = Some(take_id(&mut self.next_id));
                            TrackEventKind::New
                        }
                        None => continue,
                    };
                    let id = track.id.unwrap_or_default();
                    self.track_ids[d] = Some(id);
                    self.events.push(track.event(id, kind));
                }
                None => {
                    track.hits = 0;
                    track.misses = track.misses.saturating_add(1);
                    match track.id {
                        None => keep[t] = false,
                        Some(id) if track.misses > self.config.max_age => {
                            keep[t] = false;
                            self.events.push(track.event(id, TrackEventKind::End));
                        }
                        Some(id) => self.events.push(track.event(id, TrackEventKind::Lost)),
                    }
                }
            }
        }
        let mut keep = keep.into_iter();
        self.tracks.retain(|_| keep.next().unwrap_or(true));

        for (d, det) in detections.iter().enumerate() {
            if matched_detection[d] || !trackable(&det.bbox) {
                continue;
            }
            let mut track = Track {
                id: None,
                class_id: det.class_id,
                score: det.score,
                filter: BoxFilter::new(&det.bbox, &self.params),
                hits: 1,
                misses: 0,
            };
            if self.config.min_hits <= 1 {
                let id = take_id(&mut self.next_id);
                track.id = Some(id);
                self.track_ids[d] = Some(id);
                self.events.push(track.event(id, TrackEventKind::New));
            }
            self.tracks.push(track);
        }
        self.events.sort_by_key(|e| e.track_id);
        TrackUpdate {
            events: &self.events,
            track_ids: &self.track_ids,
        }
    }

    /// For each track, the detection it is paired with: the assignment that pairs the most
    /// tracks whose predicted box overlaps the detection by at least `iou_threshold` (and
    /// that share its class when `per_class`), and among those the greatest summed IoU.
    fn associate(&mut self, detections: &[Detection]) -> Vec<Option<usize>> {
        let rows = self.tracks.len();
        self.pairs.clear();
        for (t, track) in self.tracks.iter().enumerate() {
            let predicted = track.bbox();
            for (d, det) in detections.iter().enumerate() {
                if self.config.per_class && det.class_id != track.class_id {
                    continue;
                }
                let iou = predicted.iou(&det.bbox);
                // NaN IoU (a non-finite detection box) fails this test too.
                if iou >= self.config.iou_threshold && iou > 0.0 && trackable(&det.bbox) {
                    self.pairs.push((t, d, 1.0 - f64::from(iou)));
                }
            }
        }
        assignment::max_matching_min_cost(rows, detections.len(), &self.pairs)
    }
}

fn take_id(next_id: &mut u32) -> u32 {
    let id = *next_id;
    // 4 billion tracks at 100 new ones a second is 16 months; wrap past 0, which means "none"
    // to many readers.
    *next_id = next_id.checked_add(1).unwrap_or(1);
    id
}

/// A box the filter can follow: finite corners and some area.
fn trackable(bbox: &BoundingBox) -> bool {
    [bbox.x1, bbox.y1, bbox.x2, bbox.y2]
        .iter()
        .all(|v| v.is_finite())
        && bbox.area() > 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class_id: usize, cx: f32, cy: f32, size: f32) -> Detection {
        Detection {
            class_id,
            score: 0.9,
            bbox: BoundingBox::from_center(cx, cy, size, size),
        }
    }

    fn kinds(update: &TrackUpdate) -> Vec<(u32, TrackEventKind)> {
        update.events.iter().map(|e| (e.track_id, e.kind)).collect()
    }

    const FRAME_US: u64 = 33_333;

    #[test]
    fn a_track_is_born_after_min_hits_and_ends_after_max_age_misses() {
        use TrackEventKind::*;
        let mut tracker = Tracker::new(TrackerConfig {
            min_hits: 3,
            max_age: 2,
            ..TrackerConfig::default()
        });
        let d = [det(0, 100.0, 100.0, 50.0)];
        let mut t = 0;
        let mut step = |dets: &[Detection]| {
            t += FRAME_US;
            let u = tracker.update(t, dets);
            (kinds(&u), u.track_ids.to_vec())
        };
        assert_eq!(step(&d), (vec![], vec![None]));
        assert_eq!(step(&d), (vec![], vec![None]));
        assert_eq!(step(&d), (vec![(1, New)], vec![Some(1)]));
        assert_eq!(step(&d), (vec![(1, Update)], vec![Some(1)]));
        assert_eq!(step(&[]).0, vec![(1, Lost)]);
        assert_eq!(step(&[]).0, vec![(1, Lost)]);
        assert_eq!(step(&[]).0, vec![(1, End)]);
        assert_eq!(step(&[]).0, vec![]);
        // The next object gets the next id, never 1 again.
        step(&d);
        step(&d);
        assert_eq!(step(&d).0, vec![(2, New)]);
    }

    #[test]
    fn a_one_frame_false_positive_leaves_no_trace() {
        let mut tracker = Tracker::new(TrackerConfig::default());
        tracker.update(0, &[det(0, 10.0, 10.0, 8.0)]);
        assert_eq!(tracker.tracks().len(), 1);
        let u = tracker.update(FRAME_US, &[]);
        assert!(u.events.is_empty());
        assert!(tracker.tracks().is_empty());
    }

    #[test]
    fn min_hits_of_one_reports_the_first_detection() {
        let mut tracker = Tracker::new(TrackerConfig {
            min_hits: 1,
            ..TrackerConfig::default()
        });
        let u = tracker.update(0, &[det(2, 10.0, 10.0, 8.0), det(5, 90.0, 10.0, 8.0)]);
        assert_eq!(
            kinds(&u),
            vec![(1, TrackEventKind::New), (2, TrackEventKind::New)]
        );
        assert_eq!(u.track_ids, &[Some(1), Some(2)]);
        assert_eq!(u.events[1].class_id, 5);
    }

    #[test]
    fn per_class_matching_keeps_classes_apart() {
        let config = TrackerConfig {
            min_hits: 1,
            ..TrackerConfig::default()
        };
        let mut strict = Tracker::new(config);
        strict.update(0, &[det(0, 50.0, 50.0, 40.0)]);
        // Same place, other class: a new track, and the old one is lost.
        let u = strict.update(FRAME_US, &[det(1, 50.0, 50.0, 40.0)]);
        assert_eq!(
            kinds(&u),
            vec![(1, TrackEventKind::Lost), (2, TrackEventKind::New)]
        );

        let mut loose = Tracker::new(TrackerConfig {
            per_class: false,
            ..config
        });
        loose.update(0, &[det(0, 50.0, 50.0, 40.0)]);
        let u = loose.update(FRAME_US, &[det(1, 50.0, 50.0, 40.0)]);
        assert_eq!(kinds(&u), vec![(1, TrackEventKind::Update)]);
        assert_eq!(
            u.events[0].class_id, 1,
            "class follows the latest detection"
        );
    }

    #[test]
    fn boxes_overlapping_less_than_the_threshold_are_not_paired() {
        let mut tracker = Tracker::new(TrackerConfig {
            min_hits: 1,
            iou_threshold: 0.5,
            ..TrackerConfig::default()
        });
        tracker.update(0, &[det(0, 50.0, 50.0, 40.0)]);
        // Shifted by 20 px of 40: IoU = 20·40 / (2·1600 − 800) = 1/3 < 0.5.
        let u = tracker.update(FRAME_US, &[det(0, 70.0, 50.0, 40.0)]);
        assert_eq!(
            kinds(&u),
            vec![(1, TrackEventKind::Lost), (2, TrackEventKind::New)]
        );
    }

    #[test]
    fn velocity_is_reported_in_pixels_per_second() {
        let mut tracker = Tracker::new(TrackerConfig {
            min_hits: 1,
            ..TrackerConfig::default()
        });
        // 3 px per 10 ms frame = 300 px/s right, 100 px/s up.
        let mut last = None;
        for i in 0..50u64 {
            let d = det(0, 100.0 + 3.0 * i as f32, 200.0 - 1.0 * i as f32, 60.0);
            last = tracker.update(i * 10_000, &[d]).events.first().copied();
        }
        let [vx, vy] = last.map(|e| e.velocity_px_s).unwrap_or_default();
        assert!(
            (vx - 300.0).abs() < 3.0 && (vy + 100.0).abs() < 1.0,
            "{vx} {vy}"
        );
    }

    #[test]
    fn a_timestamp_going_back_is_taken_as_no_time_passing() {
        let mut tracker = Tracker::new(TrackerConfig {
            min_hits: 1,
            ..TrackerConfig::default()
        });
        tracker.update(1_000_000, &[det(0, 50.0, 50.0, 40.0)]);
        let u = tracker.update(900_000, &[det(0, 51.0, 50.0, 40.0)]);
        assert_eq!(kinds(&u), vec![(1, TrackEventKind::Update)]);
        assert!(u.events[0].bbox.x1.is_finite());
    }

    #[test]
    fn degenerate_boxes_start_no_track() {
        let mut tracker = Tracker::new(TrackerConfig {
            min_hits: 1,
            ..TrackerConfig::default()
        });
        let bad = [
            Detection {
                class_id: 0,
                score: 0.5,
                bbox: BoundingBox {
                    x1: f32::NAN,
                    y1: 0.0,
                    x2: 5.0,
                    y2: 5.0,
                },
            },
            det(0, 10.0, 10.0, 0.0),
        ];
        let u = tracker.update(0, &bad);
        assert!(u.events.is_empty());
        assert_eq!(u.track_ids, &[None, None]);
    }

    #[test]
    fn config_values_are_checked_with_the_key_named() {
        let bad = |c: TrackerConfig| c.validate().unwrap_err().0;
        let d = TrackerConfig::default();
        assert_eq!(d.validate(), Ok(()));
        assert_eq!(bad(TrackerConfig { min_hits: 0, ..d }), "tracker.min_hits");
        assert_eq!(
            bad(TrackerConfig {
                max_age: 1_000_000,
                ..d
            }),
            "tracker.max_age"
        );
        for t in [0.0, -0.1, 1.5, f32::NAN] {
            assert_eq!(
                bad(TrackerConfig {
                    iou_threshold: t,
                    ..d
                }),
                "tracker.iou_threshold"
            );
        }
    }
}
