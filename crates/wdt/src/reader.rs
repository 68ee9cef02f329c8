//! Reading every order of a time range, window by window, page by page, as a stream.
//!
//! A range (inclusive at both ends, Beijing time) is split into windows of at most
//! `max_window_days` (never more than WDT's 30), each starting one second after the previous one
//! ends, so no second is read twice or skipped. In each window page 0 gives `total_count`; the
//! pages are then read from the last to the first, page 0 again included. When an order leaves the
//! window while it is being paged, the orders behind it move one place toward the front: reading
//! backwards, they move into a page not read yet, so the worst outcome is a duplicate, which the
//! per-window set of `stockout_id`s removes. Memory holds one page plus that set.
//!
//! Retries and the call rate are the client's ([`WdtClient::query_retrying`]); the stream ends
//! after the first error it yields, transient errors only arriving once the retries are spent.

use std::collections::{HashSet, VecDeque};

use chrono::{Duration, Timelike};
use futures::Stream;

use crate::client::{StockoutQuery, WdtClient};
use crate::config::MAX_WINDOW_DAYS;
use crate::error::WdtError;
use crate::order::StockoutOrder;
use crate::time::{WdtTime, format_wdt_time};

/// One query window, inclusive at both ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The first second of the window.
    pub start: WdtTime,
    /// The last second of the window.
    pub end: WdtTime,
}

/// Which clock a window applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TimeBasis {
    /// Consign (shipping) time, WDT's default: shipped and completed orders.
    #[default]
    Consign,
    /// Last-modified time (`is_by_modified=1`), for change capture.
    Modified,
}

/// What to read besides the window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadFilter {
    /// The clock the windows apply to.
    pub basis: TimeBasis,
    /// One stock-out status (`5` cancelled, `95` shipped, `110` completed…); none: WDT's default.
    pub status: Option<i32>,
    /// Only this shop.
    pub shop_no: Option<String>,
    /// Only this warehouse.
    pub warehouse_no: Option<String>,
}

/// Splits `from..=to` into windows of at most `max_window`, each one second after the last.
///
/// Sub-second parts are dropped, as WDT's times have none.
pub fn split_windows(
    from: WdtTime,
    to: WdtTime,
    max_window: Duration,
) -> Result<Vec<Window>, WdtError> {
    let invalid = |detail: String| Err(WdtError::InvalidRequest { detail });
    let (from, to) = (whole_second(from), whole_second(to));
    if from > to {
        return invalid(format!(
            "range starts after it ends: {} > {}",
            fmt(&from),
            fmt(&to)
        ));
    }
    let second = Duration::seconds(1);
    if max_window < second || max_window > Duration::days(i64::from(MAX_WINDOW_DAYS)) {
        return invalid(format!(
            "window length {max_window} is outside 1 s..=30 days"
        ));
    }

    let mut windows = Vec::new();
    let mut start = from;
    loop {
        // The last second of a window is included, so a window of `max_window` ends one second
        // before `start + max_window`.
        let end = (start + max_window - second).min(to);
        windows.push(Window { start, end });
        if end >= to {
            return Ok(windows);
        }
        start = end + second;
    }
}

fn whole_second(time: WdtTime) -> WdtTime {
    time.with_nanosecond(0).unwrap_or(time)
}

fn fmt(time: &WdtTime) -> String {
    format_wdt_time(time)
}

/// Reads ranges of orders through a [`WdtClient`].
#[derive(Debug, Clone)]
pub struct WindowReader {
    client: WdtClient,
    max_window: Duration,
}

impl WindowReader {
    /// A reader whose windows are as long as the client's `max_window_days`.
    pub fn new(client: WdtClient) -> WindowReader {
        let max_window = Duration::days(i64::from(client.config().max_window_days));
        WindowReader { client, max_window }
    }

    /// Uses windows of at most `max_window` (1 s to 30 days; checked when reading).
    pub fn with_max_window(mut self, max_window: Duration) -> WindowReader {
        self.max_window = max_window;
        self
    }

    /// The client the reader calls.
    pub fn client(&self) -> &WdtClient {
        &self.client
    }

    /// The windows a range is read in.
    pub fn windows(&self, from: WdtTime, to: WdtTime) -> Result<Vec<Window>, WdtError> {
        split_windows(from, to, self.max_window)
    }

    /// Every order of `from..=to`, each once per window; a bad range is the stream's only item.
    pub fn read_range(
        &self,
        from: WdtTime,
        to: WdtTime,
        filter: ReadFilter,
    ) -> impl Stream<Item = Result<StockoutOrder, WdtError>> + Send + 'static {
        let (windows, error) = match self.windows(from, to) {
            Ok(windows) => (windows.into(), None),
            Err(error) => (VecDeque::new(), Some(error)),
        };
        self.stream(windows, filter, error)
    }

    /// Every order of one window, each once.
    pub fn read_window(
        &self,
        window: Window,
        filter: ReadFilter,
    ) -> impl Stream<Item = Result<StockoutOrder, WdtError>> + Send + 'static {
        self.stream(VecDeque::from([window]), filter, None)
    }

    fn stream(
        &self,
        windows: VecDeque<Window>,
        filter: ReadFilter,
        error: Option<WdtError>,
    ) -> impl Stream<Item = Result<StockoutOrder, WdtError>> + Send + 'static {
        let state = ReadState {
            client: self.client.clone(),
            page_size: self.client.config().page_size,
            filter,
            windows,
            window: None,
            next_page: None,
            buffer: VecDeque::new(),
            seen: HashSet::new(),
            error,
            ended: false,
        };
        futures::stream::unfold(state, ReadState::next)
    }
}

/// Where a read stands: the windows left, the page to read next, the orders not yielded yet.
struct ReadState {
    client: WdtClient,
    page_size: u32,
    filter: ReadFilter,
    windows: VecDeque<Window>,
    window: Option<Window>,
    next_page: Option<u32>,
    buffer: VecDeque<StockoutOrder>,
    seen: HashSet<i64>,
    error: Option<WdtError>,
    ended: bool,
}

impl ReadState {
    async fn next(mut self) -> Option<(Result<StockoutOrder, WdtError>, ReadState)> {
        loop {
            if let Some(order) = self.buffer.pop_front() {
                return Some((Ok(order), self));
            }
            if let Some(error) = self.error.take() {
                self.ended = true;
                return Some((Err(error), self));
            }
            if self.ended {
                return None;
            }
            match self.advance().await {
                Ok(true) => {}
                Ok(false) => self.ended = true,
                Err(error) => self.error = Some(error),
            }
        }
    }

    /// Reads the next page, or opens the next window; `false` when nothing is left.
    async fn advance(&mut self) -> Result<bool, WdtError> {
        if let (Some(window), Some(page_no)) = (self.window, self.next_page) {
            self.next_page = page_no.checked_sub(1);
            let page = self
                .client
                .query_retrying(&self.query(&window, page_no))
                .await?;
            self.keep(page.orders);
            return Ok(true);
        }
        match self.windows.pop_front() {
            Some(window) => self.open(window).await.map(|()| true),
            None => Ok(false),
        }
    }

    /// Reads page 0 of a window for its `total_count` and plans the backward pass.
    async fn open(&mut self, window: Window) -> Result<(), WdtError> {
        self.seen.clear();
        self.window = Some(window);
        let first = self.client.query_retrying(&self.query(&window, 0)).await?;
        let page_size = u64::from(self.page_size);
        let total_count = match first.total_count {
            Some(total) => total,
            None if (first.orders.len() as u64) < page_size => first.orders.len() as u64,
            None => {
                return Err(WdtError::Malformed {
                    detail: "a full page 0 came without total_count".into(),
                });
            }
        };
        let pages = total_count.div_ceil(page_size);
        // One page was all there was; otherwise read from the last page down to page 0 again.
        self.next_page = if pages > 1 {
            u32::try_from(pages - 1).ok()
        } else {
            None
        };
        tracing::info!(
            start = %fmt(&window.start),
            end = %fmt(&window.end),
            total_count,
            pages,
            "Reading a WDT window"
        );
        self.keep(first.orders);
        Ok(())
    }

    fn keep(&mut self, orders: Vec<StockoutOrder>) {
        for order in orders {
            if self.seen.insert(order.stockout_id()) {
                self.buffer.push_back(order);
            }
        }
    }

    fn query(&self, window: &Window, page_no: u32) -> StockoutQuery {
        StockoutQuery {
            status: self.filter.status,
            is_by_modified: self.filter.basis == TimeBasis::Modified,
            shop_no: self.filter.shop_no.clone(),
            warehouse_no: self.filter.warehouse_no.clone(),
            page_no,
            ..StockoutQuery::window(window.start, window.end, self.page_size)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test reports failure by panicking")]
mod tests {
    use super::*;
    use crate::time::parse_cli_time;

    fn at(text: &str) -> WdtTime {
        parse_cli_time(text).unwrap()
    }

    #[test]
    fn forty_days_split_into_thirty_and_ten_stepping_one_second() {
        let windows = split_windows(
            at("2024-05-01 00:00:00"),
            at("2024-06-09 23:59:59"),
            Duration::days(30),
        )
        .unwrap();
        let shown: Vec<_> = windows
            .iter()
            .map(|w| (fmt(&w.start), fmt(&w.end)))
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "2024-05-01 00:00:00".to_owned(),
                    "2024-05-30 23:59:59".to_owned()
                ),
                (
                    "2024-05-31 00:00:00".to_owned(),
                    "2024-06-09 23:59:59".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn a_single_second_is_one_window_and_reversed_ranges_are_refused() {
        let t = at("2024-05-01 00:00:00");
        assert_eq!(
            split_windows(t, t, Duration::days(1)).unwrap(),
            [Window { start: t, end: t }]
        );
        assert!(split_windows(t, t - Duration::seconds(1), Duration::days(1)).is_err());
        assert!(split_windows(t, t, Duration::days(31)).is_err());
    }

    #[test]
    fn smaller_windows_cover_the_range_without_gaps_or_overlaps() {
        let (from, to) = (at("2024-05-01 00:00:00"), at("2024-05-03 11:59:59"));
        let windows = split_windows(from, to, Duration::hours(7)).unwrap();
        assert_eq!(windows.first().map(|w| w.start), Some(from));
        assert_eq!(windows.last().map(|w| w.end), Some(to));
        for pair in windows.windows(2) {
            assert_eq!(pair[1].start - pair[0].end, Duration::seconds(1));
            assert!(pair[0].end - pair[0].start < Duration::hours(7));
        }
    }
}
