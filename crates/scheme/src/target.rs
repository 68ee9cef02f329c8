//! The fields of a 星辰 V1 sales outbound bill (`jdy/sal/sal_outbound_save`) a scheme may fill.
//!
//! The lists follow `kingdee-xingchen.md` §4.1; each field carries the kind of value 星辰 expects,
//! which is what evaluation checks a mapped value against. Posting the bill is the `xingchen`
//! crate's business.

/// The one target API this catalogue describes.
pub const TARGET_API: &str = "jdy/sal/sal_outbound_save";

/// What a target field holds, and so what evaluation accepts for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// Free text; written as found, the empty string included.
    Text,
    /// A number that identifies something (bill number, a `*_number` reference); never empty.
    Key,
    /// A 星辰 internal id, normally from a lookup; never empty.
    Id,
    /// A date, `yyyy-MM-dd`.
    Date,
    /// An exact decimal, written as a string with trailing zeros dropped.
    Decimal,
    /// An array of lines, mapped from an array of the order.
    Rows,
}

/// A field of the bill header or of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetField {
    /// The V1 wire name.
    pub name: String,
    /// What the field holds.
    pub value_type: ValueType,
    /// Whether a scheme must map it.
    pub required: bool,
}

struct Known(&'static str, ValueType, bool);

use ValueType::{Date, Decimal, Id, Key, Rows, Text};

/// `billno` is optional for 星辰, but the bridge keys its ledger of posted bills on it, and
/// `customerid_id` is listed optional yet needed in practice (§4.1).
const HEADER: &[Known] = &[
    Known("billsource", Text, false),
    Known("id", Id, false),
    Known("billdate", Date, true),
    Known("billno", Key, true),
    Known("customerid_id", Id, true),
    Known("empid_id", Id, false),
    Known("remark", Text, false),
    Known("contact_linkman", Text, false),
    Known("contact_phone", Text, false),
    Known("contact_country_id", Id, false),
    Known("contact_province_id", Id, false),
    Known("contact_city_id", Id, false),
    Known("contact_district_id", Id, false),
    Known("contact_address", Text, false),
    Known("bill_dis_amount", Decimal, false),
    Known("bill_dis_rate", Decimal, false),
    Known("cost_fee", Decimal, false),
    Known("totalinsamount", Decimal, false),
    Known("totalamount", Decimal, false),
    Known("diffamount", Decimal, false),
    Known("totalunsettleamount", Decimal, false),
    Known("deduction_balance", Decimal, false),
    Known("delivery_type_number", Key, false),
    Known("material_entity", Rows, true),
];

const LINE: &[Known] = &[
    Known("id", Id, false),
    Known("materialid_id", Id, true),
    Known("stockid_id", Id, true),
    Known("spid_id", Id, false),
    Known("qty", Decimal, true),
    Known("unit_id", Id, true),
    Known("price", Decimal, false),
    Known("taxprice", Decimal, false),
    Known("cess", Decimal, false),
    Known("auxpropid_id", Id, false),
    Known("batchno", Text, false),
    Known("kfperiod", Text, false),
];

/// Looks up a header field by its wire name (`custom_field…` names included).
pub fn header_field(name: &str) -> Option<TargetField> {
    find(HEADER, name)
}

/// Looks up a line field (of `material_entity`) by its wire name.
pub fn line_field(name: &str) -> Option<TargetField> {
    find(LINE, name)
}

/// The names of the header fields, for messages.
pub fn header_names() -> impl Iterator<Item = &'static str> {
    HEADER.iter().map(|k| k.0)
}

/// The names of the line fields, for messages.
pub fn line_names() -> impl Iterator<Item = &'static str> {
    LINE.iter().map(|k| k.0)
}

/// The required fields of the header, or of a line.
pub(crate) fn required(line: bool) -> impl Iterator<Item = &'static str> {
    let list = if line { LINE } else { HEADER };
    list.iter().filter(|k| k.2).map(|k| k.0)
}

fn find(list: &[Known], name: &str) -> Option<TargetField> {
    if let Some(known) = list.iter().find(|k| k.0 == name) {
        return Some(TargetField {
            name: name.into(),
            value_type: known.1,
            required: known.2,
        });
    }
    custom_field(name)
}

/// 星辰 custom fields are named `custom_field<suffix>`; like the built-in fields, a `_id` suffix
/// holds an id and a `_number` suffix a reference by number.
fn custom_field(name: &str) -> Option<TargetField> {
    let suffix = name.strip_prefix("custom_field")?;
    let well_formed = !suffix.is_empty()
        && suffix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !well_formed {
        return None;
    }
    let value_type = if name.ends_with("_id") {
        Id
    } else if name.ends_with("_number") {
        Key
    } else {
        Text
    };
    Some(TargetField {
        name: name.into(),
        value_type,
        required: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_fields_are_typed_by_their_suffix() {
        let project = header_field("custom_field42obgp309axx5_number").map(|f| f.value_type);
        assert_eq!(project, Some(Key));
        assert_eq!(
            line_field("custom_fieldabc_id").map(|f| f.value_type),
            Some(Id)
        );
        assert_eq!(
            line_field("custom_fieldnote").map(|f| f.value_type),
            Some(Text)
        );
        assert_eq!(line_field("custom_field"), None);
        assert_eq!(line_field("custom_field-x"), None);
    }

    #[test]
    fn the_seed_fields_are_known_with_their_types() {
        assert_eq!(header_field("billdate").map(|f| f.value_type), Some(Date));
        assert_eq!(
            header_field("material_entity").map(|f| f.value_type),
            Some(Rows)
        );
        assert_eq!(line_field("qty").map(|f| f.value_type), Some(Decimal));
        assert_eq!(line_field("unit_id").map(|f| f.value_type), Some(Id));
        assert_eq!(line_field("billno"), None);
        assert_eq!(header_field("qty"), None);
    }
}
