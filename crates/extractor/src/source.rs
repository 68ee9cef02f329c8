//! How the scheme's `[source]` becomes the query the window reader sends.
//!
//! | scheme `[source]` | query |
//! |---|---|
//! | `window_field = "consign_time"` | [`TimeBasis::Consign`]: windows on 发货时间 |
//! | `window_field = "modified"` | [`TimeBasis::Modified`]: `is_by_modified=1` |
//! | `status = N` | `status=N`; absent: WDT's default (shipped and completed) |
//! | `params.shop_no`, `params.warehouse_no` | sent when not empty |
//! | `page_size` | the smaller of it and `WDT_PAGE_SIZE` (default 100) |
//!
//! The page size takes the smaller of the two so that either the scheme or the operator can
//! lower it (a slow gateway, a small timeout) without editing the other. The window bounds and
//! the page number are the reader's to fill. What the reader cannot send is refused at start
//! rather than silently dropped, since a filter left out reads orders the scheme meant to skip:
//! a non-empty `src_order_no`, `src_tid` or `stockout_no`, and a `start_page` other than 0
//! (the reader pages from 0, as WDT does). Reading the windows is left to [`wdt::WindowReader`].

use scheme::{ParamValue, Source, WindowField};
use wdt::{ReadFilter, TimeBasis};

use crate::config::SettingError;

/// What the extractor sends besides the window and the page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The reader's filter.
    pub filter: ReadFilter,
    /// Orders per page.
    pub page_size: u32,
}

/// The query `source` describes, with pages of at most `wdt_page_size` orders.
pub fn query(source: &Source, wdt_page_size: u32) -> Result<Query, SettingError> {
    if source.start_page() != 0 {
        return Err(SettingError::new(
            "scheme source.start_page",
            format!(
                "is {}, but the extractor pages from 0 as WDT does",
                source.start_page()
            ),
        ));
    }
    let status = match source.status() {
        Some(status) => Some(i32::try_from(status).map_err(|_| {
            SettingError::new("scheme source.status", format!("{status} is out of range"))
        })?),
        None => None,
    };
    let mut filter = ReadFilter {
        basis: match source.window_field() {
            WindowField::ConsignTime => TimeBasis::Consign,
            WindowField::Modified => TimeBasis::Modified,
        },
        status,
        shop_no: None,
        warehouse_no: None,
    };
    for (name, value) in source.params() {
        apply_param(&mut filter, name, value)?;
    }
    Ok(Query {
        filter,
        page_size: source.page_size().min(wdt_page_size),
    })
}

fn apply_param(
    filter: &mut ReadFilter,
    name: &str,
    value: &ParamValue,
) -> Result<(), SettingError> {
    // Placeholders are the window and the page, which the reader fills itself.
    let ParamValue::Literal(text) = value else {
        return Ok(());
    };
    if text.is_empty() {
        return Ok(());
    }
    match name {
        "shop_no" => filter.shop_no = Some(text.clone()),
        "warehouse_no" => filter.warehouse_no = Some(text.clone()),
        other => {
            return Err(SettingError::new(
                "scheme source.params",
                format!("{other} = {text:?} cannot be sent by the extractor's reader"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use scheme::Scheme;

    fn scheme_with_source(source: &str) -> Scheme {
        let builtin = include_str!("../../../deploy/schemes/wdt-stockout-to-xingchen-v1.toml");
        // Table headers start a line; the file's opening comment names them too, after a `#`.
        let start = builtin.find("\n[source]").expect("a [source] table");
        let end = builtin
            .find("\n[collections.")
            .expect("collections after the source");
        let text = format!("{}{source}\n{}", &builtin[..start], &builtin[end..]);
        Scheme::from_str(&text, "test").expect("the scheme loads")
    }

    const PARAMS: &str = r#"
[source.params]
start_time = "{{WINDOW_START}}"
end_time = "{{WINDOW_END}}"
page_size = "{{PAGINATION_PAGE_SIZE}}"
page_no = "{{PAGINATION_START_PAGE}}"
"#;

    #[test]
    fn the_builtin_scheme_reads_shipped_orders_by_consign_time() {
        let query = query(Scheme::builtin().source(), 100).expect("query");
        assert_eq!(query.filter, ReadFilter::default());
        assert_eq!(
            query.page_size,
            Scheme::builtin().source().page_size().min(100)
        );
    }

    #[test]
    fn modified_time_status_and_shop_reach_the_filter() {
        let source = format!(
            "[source]\nmethod = \"wdt.stockout.order.query.trade\"\nwindow_field = \"modified\"\n\
             status = 5\npage_size = 40\nstart_page = 0\n{PARAMS}shop_no = \"SHOP1\"\n"
        );
        let scheme = scheme_with_source(&source);
        let query = query(scheme.source(), 100).expect("query");
        assert_eq!(query.filter.basis, TimeBasis::Modified);
        assert_eq!(query.filter.status, Some(5));
        assert_eq!(query.filter.shop_no.as_deref(), Some("SHOP1"));
        assert_eq!(query.page_size, 40);
    }

    #[test]
    fn the_smaller_page_size_wins() {
        let query = query(Scheme::builtin().source(), 25).expect("query");
        assert_eq!(query.page_size, 25);
    }

    #[test]
    fn a_filter_the_reader_cannot_send_is_refused() {
        let source = format!(
            "[source]\nmethod = \"wdt.stockout.order.query.trade\"\nwindow_field = \
             \"consign_time\"\npage_size = 100\nstart_page = 0\n{PARAMS}src_tid = \"T1\"\n"
        );
        let scheme = scheme_with_source(&source);
        let err = query(scheme.source(), 100).expect_err("refused");
        assert!(err.to_string().contains("src_tid"), "{err}");
    }
}
