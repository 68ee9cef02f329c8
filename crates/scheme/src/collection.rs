//! The 星辰 master-data collections a lookup may name, and the key of one lookup.
//!
//! The scheme file maps the seed platform's collection ids to these kinds; resolving a key against
//! 星辰 (or a cache) is the caller's business, see [`crate::Lookup`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// A kind of 星辰 master data that a lookup resolves numbers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Collection {
    /// 客户; the seed looks customers up by the shop number.
    Customer,
    /// 商品; looked up by the goods number, for the material id and its base unit.
    Material,
    /// 仓库; looked up by the warehouse number.
    Store,
}

impl Collection {
    /// Every collection, in a stable order.
    pub const ALL: [Collection; 3] = [
        Collection::Customer,
        Collection::Material,
        Collection::Store,
    ];

    /// The name used in scheme files, keys and messages.
    pub fn name(self) -> &'static str {
        match self {
            Collection::Customer => "customer",
            Collection::Material => "material",
            Collection::Store => "store",
        }
    }

    /// The 星辰 fields a lookup in this collection may return (V1 detail wire names).
    pub fn returnable_fields(self) -> &'static [&'static str] {
        match self {
            Collection::Customer | Collection::Store => &["id", "number", "name"],
            Collection::Material => &["id", "number", "name", "baseunitid_id"],
        }
    }
}

impl fmt::Display for Collection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// One master-data resolution an order needs: `field` of the `collection` record whose number is
/// `number`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LookupKey {
    /// Where to look.
    pub collection: Collection,
    /// The 星辰 field wanted, one of [`Collection::returnable_fields`].
    pub field: String,
    /// The number to find, as the order wrote it; never empty.
    pub number: String,
}

impl fmt::Display for LookupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} where number={}",
            self.collection, self.field, self.number
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_key_reads_as_the_question_it_asks() {
        let key = LookupKey {
            collection: Collection::Customer,
            field: "id".into(),
            number: "TM001".into(),
        };
        assert_eq!(key.to_string(), "customer id where number=TM001");
    }

    #[test]
    fn only_materials_return_a_base_unit() {
        for collection in Collection::ALL {
            let has_unit = collection.returnable_fields().contains(&"baseunitid_id");
            assert_eq!(has_unit, collection == Collection::Material, "{collection}");
        }
    }
}
