//! Forward-return labels. The label of bar `i` is the return from its close to the close `h` bars
//! later; it becomes known at that later bar, and the labeler emits it then and not before, so a
//! sample can only enter a training set whose cut-off is at or after the time its label was known.

use std::collections::VecDeque;

use crate::time::EventTime;

/// Direction class of a forward return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// The return is below `-dead_zone`.
    Down,
    /// The return is above `dead_zone`.
    Up,
}

/// A labeled sample: the bar it describes and when its label became known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Label {
    /// Time of the bar the label belongs to (its features are those of this bar).
    pub ts: EventTime,
    /// Time of the bar at which the label became known (`h` bars later).
    pub known_at: EventTime,
    /// Forward simple return `close[i+h] / close[i] - 1`.
    pub ret: f64,
    /// Direction, or `None` inside the dead zone (such samples train the return model only).
    pub class: Option<Class>,
}

/// Emits each bar's label `h` bars later, with whatever the caller attached to that bar (its
/// feature row, say). O(1) per bar, O(h) memory.
#[derive(Debug, Clone)]
pub struct Labeler<P = ()> {
    horizon: usize,
    dead_zone: f64,
    waiting: VecDeque<(EventTime, f64, P)>,
}

impl Labeler<()> {
    /// Takes the next bar's close; returns the label of the bar `h` bars back, now known.
    /// A non-finite or non-positive close is skipped (it neither gets nor gives a label).
    pub fn push(&mut self, ts: EventTime, close: f64) -> Option<Label> {
        self.push_with(ts, close, ()).map(|(l, ())| l)
    }
}

impl<P> Labeler<P> {
    /// Labels over `horizon` bars (at least 1); returns within `±dead_zone` get no class.
    pub fn new(horizon: usize, dead_zone: f64) -> Self {
        Labeler {
            horizon: horizon.max(1),
            dead_zone: dead_zone.abs(),
            waiting: VecDeque::with_capacity(horizon.max(1) + 1),
        }
    }

    /// [`Labeler::push`] with a payload that comes back with the bar's label.
    pub fn push_with(&mut self, ts: EventTime, close: f64, payload: P) -> Option<(Label, P)> {
        if !(close.is_finite() && close > 0.0) {
            return None;
        }
        self.waiting.push_back((ts, close, payload));
        if self.waiting.len() <= self.horizon {
            return None;
        }
        let (t0, c0, p) = self.waiting.pop_front()?;
        let ret = close / c0 - 1.0;
        let class = if ret > self.dead_zone {
            Some(Class::Up)
        } else if ret < -self.dead_zone {
            Some(Class::Down)
        } else {
            None
        };
        Some((
            Label {
                ts: t0,
                known_at: ts,
                ret,
                class,
            },
            p,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_arrive_h_bars_later_with_the_forward_return() {
        let mut l = Labeler::new(2, 0.01);
        let closes = [100.0, 101.0, 103.0, 99.0, 102.5];
        let out: Vec<Label> = closes
            .iter()
            .enumerate()
            .filter_map(|(i, c)| l.push(i as EventTime, *c))
            .collect();
        assert_eq!(out.len(), 3);
        assert_eq!((out[0].ts, out[0].known_at), (0, 2));
        assert!((out[0].ret - 0.03).abs() < 1e-12);
        assert_eq!(out[0].class, Some(Class::Up));
        assert_eq!(out[1].class, Some(Class::Down), "99 / 101 - 1 = -1.98%");
        assert_eq!(out[2].class, None, "102.5/103 - 1 is inside the dead zone");
    }

    #[test]
    fn a_bad_close_neither_gets_nor_gives_a_label() {
        let mut l = Labeler::new(1, 0.0);
        assert_eq!(l.push(0, 10.0), None);
        assert_eq!(l.push(1, f64::NAN), None);
        let x = l.push(2, 11.0).expect("label of bar 0");
        assert_eq!((x.ts, x.known_at), (0, 2));
    }
}
