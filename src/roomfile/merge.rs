//! A k-way merge of time-ordered streams: one item held per stream, the earliest of them goes
//! out next. Memory is one item per stream, whatever the streams' length.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Something placed in time.
pub trait Timed {
    /// Its time in milliseconds.
    fn time_ms(&self) -> i64;
}

/// Merges streams into one in time order; items at the same time go out in stream order, and
/// each stream's items keep their own order (a stream that goes back in time is not
/// reordered: its next item simply competes with its later time).
pub struct Merge<I: Iterator> {
    streams: Vec<I>,
    heads: Vec<Option<I::Item>>,
    heap: BinaryHeap<Reverse<(i64, usize)>>,
}

impl<I> Merge<I>
where
    I: Iterator,
    I::Item: Timed,
{
    /// Takes each stream's first item.
    pub fn new(streams: Vec<I>) -> Merge<I> {
        let mut merge = Merge {
            heads: streams.iter().map(|_| None).collect(),
            heap: BinaryHeap::with_capacity(streams.len()),
            streams,
        };
        for i in 0..merge.streams.len() {
            merge.refill(i);
        }
        merge
    }

    /// The streams, to see how each is doing.
    pub fn streams(&self) -> &[I] {
        &self.streams
    }

    /// The streams, to see how each ended.
    pub fn into_streams(self) -> Vec<I> {
        self.streams
    }

    fn refill(&mut self, i: usize) {
        if let Some(item) = self.streams[i].next() {
            self.heap.push(Reverse((item.time_ms(), i)));
            self.heads[i] = Some(item);
        }
    }
}

impl<I> Iterator for Merge<I>
where
    I: Iterator,
    I::Item: Timed,
{
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let Reverse((_, i)) = self.heap.pop()?;
        let item = self.heads[i].take();
        self.refill(i);
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Item(i64, &'static str);

    impl Timed for Item {
        fn time_ms(&self) -> i64 {
            self.0
        }
    }

    fn merged(streams: Vec<Vec<Item>>) -> Vec<Item> {
        Merge::new(streams.into_iter().map(Vec::into_iter).collect()).collect()
    }

    #[test]
    fn items_come_out_in_time_order_ties_by_stream() {
        let out = merged(vec![
            vec![Item(0, "a0"), Item(20, "a20"), Item(40, "a40")],
            vec![],
            vec![Item(10, "b10"), Item(20, "b20"), Item(50, "b50")],
            vec![Item(-5, "c-5"), Item(20, "c20")],
        ]);
        let names: Vec<&str> = out.iter().map(|i| i.1).collect();
        assert_eq!(
            names,
            ["c-5", "a0", "b10", "a20", "b20", "c20", "a40", "b50"]
        );
    }

    #[test]
    fn a_stream_keeps_its_own_order_even_when_it_goes_back() {
        // Stream a has a late item (15 after 30): it is not moved before a30.
        let out = merged(vec![
            vec![
                Item(0, "a0"),
                Item(30, "a30"),
                Item(15, "a15"),
                Item(60, "a60"),
            ],
            vec![Item(10, "b10"), Item(20, "b20"), Item(40, "b40")],
        ]);
        let names: Vec<&str> = out.iter().map(|i| i.1).collect();
        assert_eq!(names, ["a0", "b10", "b20", "a30", "a15", "b40", "a60"]);
    }

    #[test]
    fn nothing_to_merge() {
        assert!(merged(vec![]).is_empty());
        assert!(merged(vec![vec![], vec![]]).is_empty());
    }
}
