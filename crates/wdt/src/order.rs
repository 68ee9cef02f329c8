//! The stock-out order of `wdt.stockout.order.query.trade`: a typed view plus the raw JSON.
//!
//! [`StockoutOrder`] is what the reader yields. It keeps the order exactly as WDT sent it (the
//! pipeline publishes that text, so nothing WDT sent is lost downstream) and a typed [`Order`] read
//! from it, which covers every field of the seed's response table ([`crate::fields`]) with the
//! lenient rules of [`crate::lenient`]: ids, statuses and flags as `i64`; money, counts and
//! weights as exact `Decimal`; times as Beijing [`WdtTime`]; the rest as text. A field WDT leaves
//! out, sends as `null`, `""` or `0000-00-00 00:00:00` is `None`. Fields WDT sends beyond the seed's table are
//! ignored by the typed view and kept in the raw JSON.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::WdtError;
use crate::time::WdtTime;

/// Declares a record whose every field is optional and read by [`crate::lenient::field`].
macro_rules! lenient_record {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( #[doc = $doc:literal] $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        pub struct $name {
            $(
                #[doc = $doc]
                #[serde(default, deserialize_with = "crate::lenient::field")]
                pub $field: Option<$ty>,
            )*
        }
    };
}

lenient_record! {
    /// An order header, every field of the seed's response table; labels are the seed's.
    pub struct Order {
        /// `stockout_id`: 出库单主键id.
        stockout_id: i64,
        /// `order_no`: 出库单号.
        order_no: String,
        /// `src_order_no`: 源单号.
        src_order_no: String,
        /// `warehouse_no`: 仓库编号.
        warehouse_no: String,
        /// `consign_time`: 发货时间.
        consign_time: WdtTime,
        /// `order_type`: 出库单类型.
        order_type: i64,
        /// `trade_status`: 订单状态.
        trade_status: i64,
        /// `order_type_name`: 出库单类型名称.
        order_type_name: String,
        /// `trade_type`: 订单类型.
        trade_type: i64,
        /// `subtype`: 出库子类型.
        subtype: i64,
        /// `goods_count`: 数量.
        goods_count: Decimal,
        /// `goods_total_amount`: 货品总售价.
        goods_total_amount: Decimal,
        /// `goods_total_cost`: 货品总成本.
        goods_total_cost: Decimal,
        /// `post_fee`: 邮资成本.
        post_fee: Decimal,
        /// `logistics_no`: 物流单号.
        logistics_no: String,
        /// `package_fee`: 包装费.
        package_fee: Decimal,
        /// `receiver_name`: 收件人.
        receiver_name: String,
        /// `receiver_country`: 国家.
        receiver_country: String,
        /// `receiver_province`: 省份.
        receiver_province: String,
        /// `receiver_city`: 城市.
        receiver_city: String,
        /// `receiver_district`: 地区.
        receiver_district: String,
        /// `receiver_address`: 详细地址.
        receiver_address: String,
        /// `receiver_mobile`: 收件人移动电话.
        receiver_mobile: String,
        /// `receiver_telno`: 收件人固定电话.
        receiver_telno: String,
        /// `receiver_zip`: 邮编.
        receiver_zip: String,
        /// `receiver_dtb`: 大头笔.
        receiver_dtb: String,
        /// `weight`: 实际重量.
        weight: Decimal,
        /// `logistics_type`: 物流公司类型.
        logistics_type: i64,
        /// `logistics_code`: 物流公司编号.
        logistics_code: String,
        /// `logistics_name`: 物流公司名称.
        logistics_name: String,
        /// `print_remark`: 打印备注.
        print_remark: String,
        /// `paid`: 已付金额.
        paid: Decimal,
        /// `refund_status`: 退款状态.
        refund_status: i64,
        /// `salesman_no`: 业务员编号.
        salesman_no: String,
        /// `salesman_name`: 业务员名称.
        salesman_name: String,
        /// `fullname`: 业务员名称.
        fullname: String,
        /// `warehouse_name`: 仓库.
        warehouse_name: String,
        /// `created`: 创建时间.
        created: WdtTime,
        /// `remark`: 备注.
        remark: String,
        /// `stockout_reason`: 出库原因.
        stockout_reason: String,
        /// `outer_no`: 外部单号.
        outer_no: String,
        /// `trade_no`: 订单编号.
        trade_no: String,
        /// `src_trade_no`: 原始单号.
        src_trade_no: String,
        /// `nick_name`: 网名.
        nick_name: String,
        /// `customer_name`: 客户名称.
        customer_name: String,
        /// `customer_no`: 客户编号.
        customer_no: String,
        /// `trade_time`: 交易时间.
        trade_time: WdtTime,
        /// `pay_time`: 付款时间.
        pay_time: WdtTime,
        /// `status`: 出库单状态.
        status: i64,
        /// `shop_name`: 店铺名称.
        shop_name: String,
        /// `shop_no`: 店铺编号.
        shop_no: String,
        /// `buyer_message`: 买家留言.
        buyer_message: String,
        /// `cs_remark`: 客服备注.
        cs_remark: String,
        /// `flag_name`: 订单标记.
        flag_name: String,
        /// `post_amount`: 邮费.
        post_amount: Decimal,
        /// `block_reason`: 截停原因.
        block_reason: String,
        /// `invoice_type`: 发票类别.
        invoice_type: i64,
        /// `invoice_title`: 发票抬头.
        invoice_title: String,
        /// `invoice_content`: 发票内容.
        invoice_content: String,
        /// `invoice_id`: 发票ID.
        invoice_id: String,
        /// `delivery_term`: 发货条件.
        delivery_term: i64,
        /// `fenxiao_type`: 分销类别.
        fenxiao_type: i64,
        /// `fenxiao_nick`: 分销商ID.
        fenxiao_nick: String,
        /// `cod_amount`: 货到付款金额.
        cod_amount: Decimal,
        /// `id_card_type`: 证件类别.
        id_card_type: i64,
        /// `receiver_area`: 收件人地址.
        receiver_area: String,
        /// `shop_remark`: 店铺备注.
        shop_remark: String,
        /// `modified`: 最后修改时间.
        modified: WdtTime,
        /// `platform_id`: 平台id.
        platform_id: i64,
        /// `trade_id`: 订单表主键.
        trade_id: i64,
        /// `checker_name`: 审单员编号.
        checker_name: String,
        /// `employee_no`: 审单员编号.
        employee_no: String,
        /// `operator_name`: 审核员.
        operator_name: String,
        /// `packager_no`: 打包员编号.
        packager_no: String,
        /// `packager_name`: 打包员.
        packager_name: String,
        /// `picker_no`: 拣货员编号.
        picker_no: String,
        /// `picker_name`: 拣货员.
        picker_name: String,
        /// `printer_no`: 打单员编号.
        printer_no: String,
        /// `printer_name`: 打单员.
        printer_name: String,
        /// `examiner_no`: 验货员编号.
        examiner_no: String,
        /// `examiner_name`: 验货员.
        examiner_name: String,
        /// `stockout_no`: 出库单号.
        stockout_no: String,
        /// `src_order_type`: 源单据类别.
        src_order_type: i64,
        /// `wms_status`: 处理状态.
        wms_status: i64,
        /// `error_info`: 接口处理错误信息.
        error_info: String,
        /// `warehouse_type`: 仓库类别.
        warehouse_type: i64,
        /// `warehouse_id`: 出库仓库id.
        warehouse_id: i64,
        /// `customer_id`: 客户id.
        customer_id: i64,
        /// `freeze_reason`: 冻结原因.
        freeze_reason: String,
        /// `is_allocated`: 是否分配.
        is_allocated: i64,
        /// `consign_status`: 出库状态.
        consign_status: i64,
        /// `ebill_status`: 电子面单状态.
        ebill_status: i64,
        /// `operator_id`: 制单人.
        operator_id: i64,
        /// `goods_type_count`: 货品种类数量.
        goods_type_count: i64,
        /// `md5_str`: MD5字符串值.
        md5_str: String,
        /// `custom_type`: 其他出库自定义子类别.
        custom_type: i64,
        /// `receiver_ring`: 京东三环内.
        receiver_ring: i64,
        /// `to_deliver_time`: 配送时间.
        to_deliver_time: String,
        /// `pre_charge_time`: 配送中心.
        pre_charge_time: String,
        /// `logistics_id`: 物流公司ID.
        logistics_id: i64,
        /// `unknown_goods_amount`: 未知成本销售总额.
        unknown_goods_amount: Decimal,
        /// `calc_post_cost`: 预估邮费成本.
        calc_post_cost: Decimal,
        /// `post_cost`: 邮费成本.
        post_cost: Decimal,
        /// `calc_weight`: 预估重量.
        calc_weight: Decimal,
        /// `post_weight`: 快递重量.
        post_weight: Decimal,
        /// `package_id`: 包装id.
        package_id: i64,
        /// `package_cost`: 包装成本.
        package_cost: Decimal,
        /// `has_invoice`: 是否包含发票.
        has_invoice: i64,
        /// `printer_id`: 打单员.
        printer_id: i64,
        /// `pick_error_count`: 拣货出错次数.
        pick_error_count: i64,
        /// `picker_id`: 拣货员id.
        picker_id: i64,
        /// `sorter_id`: 分拣员id.
        sorter_id: i64,
        /// `examiner_id`: 验货员id.
        examiner_id: i64,
        /// `consigner_id`: 发货人id.
        consigner_id: i64,
        /// `packager_id`: 打包员id.
        packager_id: i64,
        /// `pack_score`: 打包积分.
        pack_score: Decimal,
        /// `pick_score`: 拣货积分.
        pick_score: Decimal,
        /// `checkouter_id`: 签出员工id.
        checkouter_id: i64,
        /// `watcher_id`: 监视员id.
        watcher_id: i64,
        /// `picklist_no`: 分拣单编号.
        picklist_no: String,
        /// `picklist_seq`: 分拣序号.
        picklist_seq: i64,
        /// `invoice_print_status`: 发票打印状态.
        invoice_print_status: i64,
        /// `flag_id`: 颜色.
        flag_id: i64,
        /// `logistics_template_id`: 物流单模板id.
        logistics_template_id: i64,
        /// `sendbill_template_id`: 发货单模板id.
        sendbill_template_id: i64,
        /// `pos_allocate_mode`: 货位分配方式.
        pos_allocate_mode: i64,
        /// `note_count`: 便签条数.
        note_count: i64,
        /// `reason_id`: 其他出库原因.
        reason_id: i64,
        /// `lock_id`: 锁定策略id.
        lock_id: i64,
        /// `reserve`: 保留.
        reserve: String,
        /// `batch_no`: 打印批次.
        batch_no: String,
        /// `discount`: 优惠金额.
        discount: Decimal,
        /// `src_tids`: 原始单号.
        src_tids: String,
        /// `tax`: 税额.
        tax: Decimal,
        /// `tax_rate`: 税率.
        tax_rate: Decimal,
        /// `currency`: 币种.
        currency: String,
        /// `id_card`: 证件号码.
        id_card: String,
        /// `stock_check_time`: 出库单审核时间.
        stock_check_time: WdtTime,
        /// `bad_reason`: 异常状态.
        bad_reason: String,
        /// `print_batch_no`: 打印批次.
        print_batch_no: String,
        /// `sendbill_print_status`: 发货单打印状态.
        sendbill_print_status: i64,
        /// `logistics_print_status`: 物流单打印状态.
        logistics_print_status: i64,
        /// `picklist_print_status`: 分拣单打印状态.
        picklist_print_status: i64,
        /// `details_list`: 货品列表节点.
        details_list: Vec<Detail>,
    }
}

lenient_record! {
    /// One `details_list` row: a goods line of the order.
    pub struct Detail {
        /// `rec_id`: 出库明细主键.
        rec_id: i64,
        /// `stockout_id`: 出库单主键id.
        stockout_id: i64,
        /// `spec_no`: 商家编码.
        spec_no: String,
        /// `goods_count`: 货品数量.
        goods_count: Decimal,
        /// `sell_price`: 销售价.
        sell_price: Decimal,
        /// `brand_no`: 品牌编号.
        brand_no: String,
        /// `brand_name`: 品牌名称.
        brand_name: String,
        /// `goods_type`: 货品类型.
        goods_type: i64,
        /// `gift_type`: 是否是赠品.
        gift_type: i64,
        /// `goods_name`: 货品名称.
        goods_name: String,
        /// `goods_no`: 货品编号.
        goods_no: String,
        /// `spec_name`: 规格名称.
        spec_name: String,
        /// `spec_code`: 规格码.
        spec_code: String,
        /// `suite_no`: 来源组合装编码.
        suite_no: String,
        /// `cost_price`: 成本价.
        cost_price: Decimal,
        /// `total_amount`: 总货款.
        total_amount: Decimal,
        /// `goods_id`: 货品id.
        goods_id: i64,
        /// `spec_id`: 商品主键.
        spec_id: i64,
        /// `weight`: 估重.
        weight: Decimal,
        /// `remark`: 备注.
        remark: String,
        /// `paid`: 已支付金额.
        paid: Decimal,
        /// `refund_status`: 退款状态.
        refund_status: i64,
        /// `market_price`: 零售价.
        market_price: Decimal,
        /// `discount`: 总折扣金额.
        discount: Decimal,
        /// `share_amount`: 分摊后合计应收.
        share_amount: Decimal,
        /// `tax_rate`: 税率.
        tax_rate: Decimal,
        /// `barcode`: 条码.
        barcode: String,
        /// `unit_name`: 基本单位.
        unit_name: String,
        /// `sale_order_id`: 订单详情表主键.
        sale_order_id: i64,
        /// `share_post`: 邮费分摊.
        share_post: Decimal,
        /// `src_oid`: 原始子订单号.
        src_oid: String,
        /// `src_tid`: 原始订单号.
        src_tid: String,
        /// `from_mask`: 单据内部来源.
        from_mask: i64,
        /// `src_order_type`: 源单据类别.
        src_order_type: i64,
        /// `src_order_detail_id`: sales_trade_order表的主键.
        src_order_detail_id: i64,
        /// `base_unit_id`: 基本单位.
        base_unit_id: i64,
        /// `unit_id`: 辅助单位.
        unit_id: i64,
        /// `unit_ratio`: 单位换算.
        unit_ratio: Decimal,
        /// `num`: 货品数量.
        num: Decimal,
        /// `num2`: 辅助数量.
        num2: Decimal,
        /// `price`: 最终价格.
        price: Decimal,
        /// `batch_id`: 指定出库批次.
        batch_id: i64,
        /// `is_examined`: 是否验货.
        is_examined: i64,
        /// `is_package`: 是否包装.
        is_package: i64,
        /// `is_zero_cost`: 是否允许0成本.
        is_zero_cost: i64,
        /// `scan_type`: 扫描方式.
        scan_type: i64,
        /// `good_prop1`: 货品档案自定义属性1.
        good_prop1: String,
        /// `good_prop2`: 货品档案自定义属性2.
        good_prop2: String,
        /// `good_prop3`: 货品档案自定义属性3.
        good_prop3: String,
        /// `good_prop4`: 货品档案自定义属性4.
        good_prop4: String,
        /// `good_prop5`: 货品档案自定义属性5.
        good_prop5: String,
        /// `good_prop6`: 货品档案自定义属性6.
        good_prop6: String,
        /// `prop1`: 单品列表自定义属性1.
        prop1: String,
        /// `prop2`: 单品列表自定义属性2.
        prop2: String,
        /// `prop3`: 单品列表自定义属性3.
        prop3: String,
        /// `prop4`: 单品列表自定义属性4.
        prop4: String,
        /// `prop5`: 单品列表自定义属性5.
        prop5: String,
        /// `prop6`: 单品列表自定义属性6.
        prop6: String,
        /// `batch_no`: 批次号.
        batch_no: String,
        /// `batch_remark`: 批次备注.
        batch_remark: String,
        /// `expire_date`: 有效期.
        expire_date: String,
        /// `position_list`: 货位节点列表.
        position_list: Vec<Position>,
    }
}

lenient_record! {
    /// One `details_list.position_list` row: where in the warehouse a goods line was picked.
    pub struct Position {
        /// `position_id`: 货位ID.
        position_id: i64,
        /// `position_no`: 货位编号.
        position_no: String,
        /// `stockout_order_detail_id`: 出库单明细id.
        stockout_order_detail_id: i64,
        /// `rec_id`: 货位主键id.
        rec_id: i64,
        /// `stockin_detail_id`: 入库单明细id.
        stockin_detail_id: i64,
        /// `num`: 货品数量.
        num: Decimal,
        /// `stock_spec_detail_id`: 入库单号明细id.
        stock_spec_detail_id: i64,
        /// `batch_id`: 批次id.
        batch_id: i64,
        /// `batch_no`: 批次号.
        batch_no: String,
        /// `modified`: 最后更新时间.
        modified: WdtTime,
        /// `cost_price`: 成本价.
        cost_price: Decimal,
        /// `position_goods_count`: 货位出库数量.
        position_goods_count: Decimal,
    }
}

/// An order as WDT sent it, with its typed view and identity.
#[derive(Debug, Clone)]
pub struct StockoutOrder {
    raw: Box<RawValue>,
    order: Order,
    stockout_id: i64,
}

impl StockoutOrder {
    /// Reads the typed view of one `stockout_list` item; it must carry a `stockout_id`.
    pub fn from_raw(raw: Box<RawValue>) -> Result<StockoutOrder, WdtError> {
        if !raw.get().trim_start().starts_with('{') {
            return Err(WdtError::Malformed {
                detail: "a stockout_list item is not an object".into(),
            });
        }
        let order: Order = serde_json::from_str(raw.get()).map_err(|e| WdtError::Malformed {
            detail: format!("order {}: {e}", identity_hint(raw.get())),
        })?;
        let stockout_id = order.stockout_id.ok_or_else(|| WdtError::Malformed {
            detail: format!("order {} has no stockout_id", identity_hint(raw.get())),
        })?;
        Ok(StockoutOrder {
            raw,
            order,
            stockout_id,
        })
    }

    /// Reads an order from its JSON text.
    pub fn from_json(json: &str) -> Result<StockoutOrder, WdtError> {
        let raw = RawValue::from_string(json.to_owned()).map_err(|e| WdtError::Malformed {
            detail: format!("order is not json: {e}"),
        })?;
        StockoutOrder::from_raw(raw)
    }

    /// The order exactly as WDT sent it.
    pub fn raw(&self) -> &RawValue {
        &self.raw
    }

    /// Gives up the typed view and keeps the raw JSON.
    pub fn into_raw(self) -> Box<RawValue> {
        self.raw
    }

    /// The typed view.
    pub fn order(&self) -> &Order {
        &self.order
    }

    /// `stockout_id`, WDT's primary key of the order and the reader's de-duplication key.
    pub fn stockout_id(&self) -> i64 {
        self.stockout_id
    }

    /// `stockout_no`, or `order_no` (the same number under its older name) when it is missing.
    pub fn stockout_no(&self) -> Option<&str> {
        fn non_empty(no: &Option<String>) -> Option<&str> {
            no.as_deref().filter(|no| !no.is_empty())
        }
        non_empty(&self.order.stockout_no).or_else(|| non_empty(&self.order.order_no))
    }

    /// `modified`, the order's last change, which identifies its version.
    pub fn modified(&self) -> Option<WdtTime> {
        self.order.modified
    }
}

/// Whatever identifies an unreadable order in an error message: its id or number if visible.
fn identity_hint(json: &str) -> String {
    #[derive(Deserialize)]
    struct Hint {
        stockout_id: Option<serde_json::Value>,
        stockout_no: Option<serde_json::Value>,
    }
    match serde_json::from_str::<Hint>(json) {
        Ok(Hint {
            stockout_id: Some(id),
            ..
        }) => format!("stockout_id {id}"),
        Ok(Hint {
            stockout_no: Some(no),
            ..
        }) => format!("stockout_no {no}"),
        _ => "(no id)".to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test reports failure by panicking")]
mod tests {
    use super::*;
    use crate::fields::{DETAIL_FIELDS, Field, HEADER_FIELDS, POSITION_FIELDS};
    use serde_json::{Map, Value, json};
    use std::collections::BTreeSet;

    /// A value of the right shape for every field of `fields`, strings and numbers alternating.
    fn sample(fields: &[Field], nested: impl Fn(&str) -> Option<Value>) -> Map<String, Value> {
        let mut map = Map::new();
        for (i, field) in fields.iter().enumerate() {
            let value = nested(field.name).unwrap_or_else(|| scalar_sample(field.name, i));
            map.insert(field.name.to_owned(), value);
        }
        map
    }

    fn scalar_sample(name: &str, i: usize) -> Value {
        let is_time = [
            "consign_time",
            "created",
            "trade_time",
            "pay_time",
            "modified",
        ]
        .contains(&name)
            || name == "stock_check_time";
        if is_time {
            json!("2024-05-01 16:45:09")
        } else if i % 2 == 0 {
            json!(i)
        } else {
            json!(format!("{i}.0000"))
        }
    }

    fn full_order() -> Value {
        let position = Value::Object(sample(POSITION_FIELDS, |_| None));
        let detail = sample(DETAIL_FIELDS, |name| {
            (name == "position_list").then(|| json!([position.clone()]))
        });
        Value::Object(sample(HEADER_FIELDS, |name| {
            (name == "details_list").then(|| json!([detail.clone()]))
        }))
    }

    fn keys(value: &Value) -> BTreeSet<String> {
        value
            .as_object()
            .map(|map| map.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn names(fields: &[Field]) -> BTreeSet<String> {
        fields.iter().map(|f| f.name.to_owned()).collect()
    }

    fn assert_all_present(value: &Value, what: &str) {
        for (key, field) in value.as_object().into_iter().flatten() {
            assert!(!field.is_null(), "{what}.{key} was not read");
        }
    }

    #[test]
    fn model_has_exactly_the_seed_fields() {
        let order = serde_json::to_value(Order::default()).unwrap();
        assert_eq!(keys(&order), names(HEADER_FIELDS));
        let detail = serde_json::to_value(Detail::default()).unwrap();
        assert_eq!(keys(&detail), names(DETAIL_FIELDS));
        let position = serde_json::to_value(Position::default()).unwrap();
        assert_eq!(keys(&position), names(POSITION_FIELDS));
    }

    #[test]
    fn model_reads_every_seed_field_from_strings_and_numbers() {
        let order = StockoutOrder::from_json(&full_order().to_string()).unwrap();
        let typed = serde_json::to_value(order.order()).unwrap();
        assert_all_present(&typed, "order");
        let detail = &typed["details_list"][0];
        assert_all_present(detail, "details_list");
        assert_all_present(&detail["position_list"][0], "position_list");
    }

    #[test]
    fn raw_json_is_kept_byte_for_byte() {
        let text = r#"{"stockout_id":"7","extra":{"kept":[1,2]},"buyer_message":"快点🙏"}"#;
        let order = StockoutOrder::from_json(text).unwrap();
        assert_eq!(order.raw().get(), text);
        assert_eq!(order.stockout_id(), 7);
        assert_eq!(order.order().buyer_message.as_deref(), Some("快点🙏"));
    }

    #[test]
    fn identity_falls_back_to_order_no() {
        let order = StockoutOrder::from_json(
            r#"{"stockout_id":58231,"order_no":"CK1","stockout_no":"","modified":"2024-05-01 16:45:10"}"#,
        )
        .unwrap();
        assert_eq!(order.stockout_no(), Some("CK1"));
        assert_eq!(
            order.modified().unwrap().to_rfc3339(),
            "2024-05-01T16:45:10+08:00"
        );
    }

    #[test]
    fn money_is_exact_and_zero_times_are_absent() {
        let order = StockoutOrder::from_json(
            r#"{"stockout_id":1,"paid":"178.0100","discount":20.5,"pay_time":"0000-00-00 00:00:00",
                "details_list":[{"rec_id":"9","goods_count":"2.0000","gift_type":"1"}]}"#,
        )
        .unwrap();
        let typed = order.order();
        assert_eq!(typed.paid.unwrap().to_string(), "178.0100");
        assert_eq!(typed.discount.unwrap().to_string(), "20.5");
        assert_eq!(typed.pay_time, None);
        let detail = &typed.details_list.as_ref().unwrap()[0];
        assert_eq!((detail.rec_id, detail.gift_type), (Some(9), Some(1)));
        assert_eq!(detail.goods_count.unwrap().to_string(), "2.0000");
    }

    #[test]
    fn an_order_without_id_or_with_a_bad_value_is_a_malformed_error() {
        assert!(matches!(
            StockoutOrder::from_json(r#"{"order_no":"CK1"}"#),
            Err(WdtError::Malformed { .. })
        ));
        let err = StockoutOrder::from_json(r#"{"stockout_id":5,"paid":"lots"}"#).unwrap_err();
        assert!(err.to_string().contains("stockout_id 5"), "{err}");
    }
}
