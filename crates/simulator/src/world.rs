//! The seeded world both simulators serve: shops, warehouses and goods, with their 星辰 ids.
//!
//! One world feeds the 旺店通 simulator (which sells these goods from these shops and ships them from
//! these warehouses) and the 星辰 simulator (which holds them as customers, materials and stores),
//! so that every number WDT mentions resolves in 星辰 unless a test removes it. The same seed always
//! gives the same world. Orders are generated from the world by [`crate::orders`]; this module only
//! holds master data.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;

/// How many of each kind of master data a world holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorldSize {
    /// Shops; each is also a 星辰 customer whose number is the `shop_no`.
    pub shops: usize,
    /// Warehouses; each is also a 星辰 store whose number is the `warehouse_no`.
    pub warehouses: usize,
    /// Goods; each is also a 星辰 material whose number is the `goods_no`.
    pub goods: usize,
}

impl Default for WorldSize {
    fn default() -> Self {
        WorldSize {
            shops: 6,
            warehouses: 3,
            goods: 60,
        }
    }
}

/// A shop in WDT, and the 星辰 customer with the same number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shop {
    /// `shop_no` in WDT, the customer number in 星辰.
    pub shop_no: String,
    /// `shop_name` in WDT, the customer name in 星辰.
    pub shop_name: String,
    /// WDT's platform id (1 Taobao/Tmall, 3 JD, 69 Douyin, 0 offline).
    pub platform_id: u32,
    /// The 星辰 customer id.
    pub customer_id: String,
}

/// A warehouse in WDT, and the 星辰 store with the same number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warehouse {
    /// WDT's numeric warehouse id.
    pub warehouse_id: u64,
    /// `warehouse_no` in WDT, the store number in 星辰.
    pub warehouse_no: String,
    /// `warehouse_name` in WDT, the store name in 星辰.
    pub warehouse_name: String,
    /// The 星辰 store id.
    pub store_id: String,
}

/// A goods item in WDT, and the 星辰 material with the same number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goods {
    /// WDT's numeric goods id.
    pub goods_id: u64,
    /// `goods_no` in WDT, the material number in 星辰.
    pub goods_no: String,
    /// The goods name, in Chinese.
    pub goods_name: String,
    /// WDT's numeric spec id.
    pub spec_id: u64,
    /// `spec_no`, the merchant code of the spec.
    pub spec_no: String,
    /// `spec_code`.
    pub spec_code: String,
    /// `spec_name`, in Chinese.
    pub spec_name: String,
    /// A 13-digit barcode.
    pub barcode: String,
    /// `brand_no`.
    pub brand_no: String,
    /// `brand_name`, in Chinese.
    pub brand_name: String,
    /// The retail price (`market_price`), exact to four decimals.
    pub market_price: Decimal,
    /// The base unit's name (`unit_name`), such as 件 or 盒.
    pub unit_name: String,
    /// The 星辰 material id.
    pub material_id: String,
    /// The 星辰 id of the material's base unit (`baseunitid_id`).
    pub base_unit_id: String,
    /// The 星辰 ids of every unit of the material, the base unit first.
    pub unit_ids: Vec<String>,
}

/// Master data shared by the two simulators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct World {
    /// The seed the world was generated from.
    pub seed: u64,
    /// Every shop.
    pub shops: Vec<Shop>,
    /// Every warehouse.
    pub warehouses: Vec<Warehouse>,
    /// Every goods item.
    pub goods: Vec<Goods>,
}

const SHOP_NAMES: &[(&str, &str, u32)] = &[
    ("TM001", "示例天猫旗舰店", 1),
    ("JD001", "京东自营专区", 3),
    ("DY 001", "抖音 直播间", 69),
    ("旗舰店01", "线下旗舰店", 0),
    ("TB.002", "淘宝C店", 1),
    ("PDD001", "拼多多专营店", 32),
];
const WAREHOUSE_NAMES: &[(&str, &str)] = &[
    ("WH01", "华东仓"),
    ("WH02", "华南仓"),
    ("北京仓", "华北仓"),
    ("WH.04", "西南仓"),
];
const GOODS_WORDS: &[&str] = &[
    "保温杯",
    "帆布包",
    "蓝牙耳机",
    "手机壳",
    "茶叶礼盒",
    "毛巾",
    "雨伞",
    "台灯",
    "收纳盒",
    "马克杯",
];
const SPECS: &[(&str, &str)] = &[
    ("RED", "红色"),
    ("BLU", "蓝色"),
    ("BLK", "黑色"),
    ("L", "大号"),
];
const UNITS: &[&str] = &["件", "个", "盒", "套"];
const BRANDS: &[(&str, &str)] = &[("B01", "示例品牌"), ("B02", "星辰优选"), ("B03", "好物")];

impl World {
    /// Generates the world for `seed` with the default size.
    pub fn generate(seed: u64) -> World {
        World::generate_sized(seed, WorldSize::default())
    }

    /// Generates the world for `seed`; the same seed and size always give the same world.
    pub fn generate_sized(seed: u64, size: WorldSize) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut ids = XingchenIds::new(&mut rng);

        let shops = (0..size.shops)
            .map(|i| {
                let (no, name, platform) = SHOP_NAMES[i % SHOP_NAMES.len()];
                Shop {
                    shop_no: numbered(no, i, SHOP_NAMES.len()),
                    shop_name: name.to_owned(),
                    platform_id: platform,
                    customer_id: ids.next(),
                }
            })
            .collect();

        let warehouses = (0..size.warehouses)
            .map(|i| {
                let (no, name) = WAREHOUSE_NAMES[i % WAREHOUSE_NAMES.len()];
                Warehouse {
                    warehouse_id: 3 + i as u64,
                    warehouse_no: numbered(no, i, WAREHOUSE_NAMES.len()),
                    warehouse_name: name.to_owned(),
                    store_id: ids.next(),
                }
            })
            .collect();

        let goods = (0..size.goods)
            .map(|i| generate_goods(&mut rng, &mut ids, i))
            .collect();

        World {
            seed,
            shops,
            warehouses,
            goods,
        }
    }

    /// Finds a goods item by its number.
    pub fn goods_by_no(&self, goods_no: &str) -> Option<&Goods> {
        self.goods.iter().find(|g| g.goods_no == goods_no)
    }

    /// Finds a shop by its number.
    pub fn shop_by_no(&self, shop_no: &str) -> Option<&Shop> {
        self.shops.iter().find(|s| s.shop_no == shop_no)
    }

    /// Finds a warehouse by its number.
    pub fn warehouse_by_no(&self, warehouse_no: &str) -> Option<&Warehouse> {
        self.warehouses
            .iter()
            .find(|w| w.warehouse_no == warehouse_no)
    }
}

fn generate_goods(rng: &mut StdRng, ids: &mut XingchenIds, i: usize) -> Goods {
    let word = GOODS_WORDS[i % GOODS_WORDS.len()];
    let (spec_code, spec_name) = SPECS[i % SPECS.len()];
    let (brand_no, brand_name) = BRANDS[i % BRANDS.len()];
    // Every seventh number carries a dot or a space, as real merchant codes sometimes do.
    let goods_no = match i % 7 {
        3 => format!("G.{}", 1001 + i),
        5 => format!("G {}", 1001 + i),
        _ => format!("G-{}", 1001 + i),
    };
    // Prices in cents, written with four decimals as WDT writes money.
    let cents: i64 = rng.random_range(490..=59_900);
    let unit_count = 1 + i % 3;
    Goods {
        goods_id: 1201 + i as u64,
        spec_id: 3307 + i as u64,
        spec_no: format!("{goods_no}-{spec_code}"),
        spec_code: spec_code.to_owned(),
        spec_name: spec_name.to_owned(),
        barcode: format!("69{:011}", 10_000_000 + i as u64 * 7919),
        brand_no: brand_no.to_owned(),
        brand_name: brand_name.to_owned(),
        goods_name: format!("{brand_name}{word}"),
        market_price: Decimal::new(cents * 100, 4),
        unit_name: UNITS[i % UNITS.len()].to_owned(),
        material_id: ids.next(),
        base_unit_id: ids.next(),
        unit_ids: Vec::new(),
        goods_no,
    }
    .with_units(ids, unit_count)
}

impl Goods {
    fn with_units(mut self, ids: &mut XingchenIds, extra_units: usize) -> Goods {
        self.unit_ids.push(self.base_unit_id.clone());
        self.unit_ids.extend((1..extra_units).map(|_| ids.next()));
        self
    }
}

/// Hands out 19-digit 星辰-style ids, unique within one world.
struct XingchenIds {
    next: u64,
}

impl XingchenIds {
    fn new(rng: &mut StdRng) -> XingchenIds {
        XingchenIds {
            next: 1_786_543_210_000_000_000 + rng.random_range(0..1_000_000) * 1000,
        }
    }

    fn next(&mut self) -> String {
        self.next += 1 + (self.next % 7);
        self.next.to_string()
    }
}

/// The base number for the first of its kind, then the base with a suffix.
fn numbered(base: &str, i: usize, per_round: usize) -> String {
    let round = i / per_round;
    if round == 0 {
        base.to_owned()
    } else {
        format!("{base}-{round}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_same_world_and_numbers_are_unique() {
        let a = World::generate(7);
        assert_eq!(a, World::generate(7));
        assert_ne!(a, World::generate(8));

        let mut numbers: Vec<_> = a.goods.iter().map(|g| g.goods_no.clone()).collect();
        numbers.sort();
        numbers.dedup();
        assert_eq!(numbers.len(), a.goods.len());

        let big = World::generate_sized(
            1,
            WorldSize {
                shops: 20,
                warehouses: 9,
                goods: 10,
            },
        );
        let mut shops: Vec<_> = big.shops.iter().map(|s| s.shop_no.clone()).collect();
        shops.sort();
        shops.dedup();
        assert_eq!(shops.len(), 20);
    }

    #[test]
    fn every_material_lists_its_base_unit_first() {
        for goods in World::generate(1).goods {
            assert_eq!(goods.unit_ids.first(), Some(&goods.base_unit_id));
            assert_eq!(goods.market_price.scale(), 4);
        }
    }
}
