//! The source request a scheme declares: which 旺店通 method the extractor calls, on which clock
//! its windows filter, how it pages, and the parameters it sends, with their placeholders filled
//! per request by [`Source::render_params`]. Signing and sending are the `wdt` crate's business;
//! choosing windows and pages is the extractor's.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, FixedOffset, TimeZone};
use serde::Deserialize;

/// The one method the extractor speaks.
pub const SOURCE_METHOD: &str = "wdt.stockout.order.query.trade";

/// Beijing time, in which WDT writes and reads every time whatever the host's zone.
pub const BEIJING: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(offset) => offset,
    None => panic!("UTC+8 is a valid offset"),
};

/// Which clock a reading window filters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowField {
    /// 发货时间, WDT's default rule: shipped and completed orders whose consign time is inside.
    ConsignTime,
    /// 最后修改时间: `is_by_modified=1` is sent, and orders modified inside the window come back.
    Modified,
}

impl WindowField {
    /// The order field holding that clock.
    pub fn order_field(self) -> &'static str {
        match self {
            WindowField::ConsignTime => "consign_time",
            WindowField::Modified => "modified",
        }
    }
}

/// A value the extractor fills in per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// `{{WINDOW_START}}`, the window's first second.
    WindowStart,
    /// `{{WINDOW_END}}`, the window's last second (WDT's bounds are inclusive).
    WindowEnd,
    /// `{{PAGINATION_PAGE_SIZE}}`, [`Source::page_size`].
    PageSize,
    /// `{{PAGINATION_START_PAGE}}`, the page being requested, starting at [`Source::start_page`].
    Page,
}

impl Placeholder {
    /// Every placeholder with its spelling and the one parameter it may fill.
    pub(crate) const ALL: [(Placeholder, &'static str, &'static str); 4] = [
        (Placeholder::WindowStart, "WINDOW_START", "start_time"),
        (Placeholder::WindowEnd, "WINDOW_END", "end_time"),
        (Placeholder::PageSize, "PAGINATION_PAGE_SIZE", "page_size"),
        (Placeholder::Page, "PAGINATION_START_PAGE", "page_no"),
    ];
}

impl Placeholder {
    /// The placeholder as a scheme writes it, braces included.
    pub fn spelling(self) -> &'static str {
        match self {
            Placeholder::WindowStart => "{{WINDOW_START}}",
            Placeholder::WindowEnd => "{{WINDOW_END}}",
            Placeholder::PageSize => "{{PAGINATION_PAGE_SIZE}}",
            Placeholder::Page => "{{PAGINATION_START_PAGE}}",
        }
    }
}

/// A parameter's value as the scheme writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    /// Sent as written; an empty literal is not sent at all.
    Literal(String),
    /// Filled per request.
    Placeholder(Placeholder),
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Literal(text) => f.pad(text),
            ParamValue::Placeholder(placeholder) => f.pad(placeholder.spelling()),
        }
    }
}

/// Parameters a scheme may set; `status` and `is_by_modified` follow from [`Source::status`] and
/// [`Source::window_field`] instead, so that the two cannot disagree.
pub(crate) const KNOWN_PARAMS: &[&str] = &[
    "start_time",
    "end_time",
    "page_size",
    "page_no",
    "src_order_no",
    "src_tid",
    "stockout_no",
    "shop_no",
    "warehouse_no",
];

/// The source request settings the extractor reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub(crate) method: String,
    pub(crate) window_field: WindowField,
    pub(crate) status: Option<u32>,
    pub(crate) page_size: u32,
    pub(crate) start_page: u32,
    pub(crate) params: Vec<(String, ParamValue)>,
}

impl Source {
    /// The WDT method, `wdt.stockout.order.query.trade`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// Which clock the window filters on.
    pub fn window_field(&self) -> WindowField {
        self.window_field
    }

    /// The stock-out status filter, if any.
    pub fn status(&self) -> Option<u32> {
        self.status
    }

    /// Records per page, 1 to 100.
    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// The number of the first page (WDT counts from 0).
    pub fn start_page(&self) -> u32 {
        self.start_page
    }

    /// The parameters as the scheme writes them, in name order.
    pub fn params(&self) -> &[(String, ParamValue)] {
        &self.params
    }

    /// The business parameters of one request: the window `start..=end` (written in Beijing
    /// time whatever zone the values are in) and page `page_no`. Empty values are left out, as
    /// WDT's signers disagree about them.
    pub fn render_params<Tz: TimeZone>(
        &self,
        start: &DateTime<Tz>,
        end: &DateTime<Tz>,
        page_no: u32,
    ) -> BTreeMap<String, String> {
        let beijing = |t: &DateTime<Tz>| t.with_timezone(&BEIJING).format("%Y-%m-%d %H:%M:%S");
        let mut rendered = BTreeMap::new();
        for (name, value) in &self.params {
            let text = match value {
                ParamValue::Literal(text) => text.clone(),
                ParamValue::Placeholder(Placeholder::WindowStart) => beijing(start).to_string(),
                ParamValue::Placeholder(Placeholder::WindowEnd) => beijing(end).to_string(),
                ParamValue::Placeholder(Placeholder::PageSize) => self.page_size.to_string(),
                ParamValue::Placeholder(Placeholder::Page) => page_no.to_string(),
            };
            if !text.is_empty() {
                rendered.insert(name.clone(), text);
            }
        }
        if let Some(status) = self.status {
            rendered.insert("status".into(), status.to_string());
        }
        if self.window_field == WindowField::Modified {
            rendered.insert("is_by_modified".into(), "1".into());
        }
        rendered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn source(window_field: WindowField, status: Option<u32>) -> Source {
        let placeholder = |name: &str, p| (name.to_string(), ParamValue::Placeholder(p));
        Source {
            method: SOURCE_METHOD.into(),
            window_field,
            status,
            page_size: 50,
            start_page: 0,
            params: vec![
                placeholder("end_time", Placeholder::WindowEnd),
                placeholder("page_no", Placeholder::Page),
                placeholder("page_size", Placeholder::PageSize),
                ("shop_no".into(), ParamValue::Literal(String::new())),
                placeholder("start_time", Placeholder::WindowStart),
                ("warehouse_no".into(), ParamValue::Literal("WH01".into())),
            ],
        }
    }

    #[test]
    fn windows_are_written_in_beijing_time_whatever_their_zone() {
        let start = Utc.with_ymd_and_hms(2022, 10, 31, 16, 0, 0).single();
        let end = Utc.with_ymd_and_hms(2022, 11, 1, 15, 59, 59).single();
        let (Some(start), Some(end)) = (start, end) else {
            panic!("valid UTC times")
        };
        let params = source(WindowField::ConsignTime, None).render_params(&start, &end, 3);
        let pairs: Vec<_> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("end_time", "2022-11-01 23:59:59"),
                ("page_no", "3"),
                ("page_size", "50"),
                ("start_time", "2022-11-01 00:00:00"),
                ("warehouse_no", "WH01"),
            ]
        );
    }

    #[test]
    fn each_placeholder_is_spelled_as_the_seed_writes_it() {
        for (placeholder, name, _) in Placeholder::ALL {
            assert_eq!(placeholder.spelling(), format!("{{{{{name}}}}}"));
        }
        assert_eq!(
            ParamValue::Placeholder(Placeholder::Page).to_string(),
            "{{PAGINATION_START_PAGE}}"
        );
    }

    #[test]
    fn modified_windows_and_status_are_sent_as_wdt_expects() {
        let now = Utc::now();
        let params = source(WindowField::Modified, Some(5)).render_params(&now, &now, 0);
        assert_eq!(params.get("is_by_modified").map(String::as_str), Some("1"));
        assert_eq!(params.get("status").map(String::as_str), Some("5"));
        let default = source(WindowField::ConsignTime, None).render_params(&now, &now, 0);
        assert!(!default.contains_key("is_by_modified") && !default.contains_key("status"));
    }
}
