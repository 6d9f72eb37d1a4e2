//! A queue that threads fill and the event loop empties, waking the loop
//! only when the queue goes from empty to not empty: the loop takes
//! everything at once, so one wake-up covers every item pushed before it
//! looks.

use std::sync::{Arc, Mutex};

use mio::Waker;

/// Items for the event loop, with the loop's waker.
pub struct WakeQueue<T> {
    items: Mutex<Vec<T>>,
    waker: Arc<Waker>,
}

impl<T> WakeQueue<T> {
    /// An empty queue that wakes `waker`.
    pub fn new(waker: Arc<Waker>) -> WakeQueue<T> {
        WakeQueue {
            items: Mutex::new(Vec::new()),
            waker,
        }
    }

    /// Adds an item; wakes the loop if it was empty.
    pub fn push(&self, item: T) {
        let first = {
            let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
            items.push(item);
            items.len() == 1
        };
        if first {
            if let Err(e) = self.waker.wake() {
                log::error!("cannot wake the event loop: {e}");
            }
        }
    }

    /// Takes every item queued so far.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.items.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
