//! The field catalogue of `wdt.stockout.order.query.trade`, as the seed's response table lists it.
//!
//! The scheme checks every source field it names against these lists, and the order model's tests
//! check that it covers every one of them. The lists are data, not behaviour: the typed model lives
//! in [`crate::order`].

/// One field of a stock-out order as the seed's response table lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The wire name, as WDT sends it.
    pub name: &'static str,
    /// The seed's Chinese label.
    pub label: &'static str,
    /// Whether the field holds a scalar or an array of rows.
    pub kind: FieldKind,
}

/// Whether a field is a scalar or an array of rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A string, number or date; WDT sends all of them as strings or numbers.
    Scalar,
    /// An array of rows (`details_list`, `position_list`).
    Array,
}

/// The fields of an order header, `details_list` included.
pub const HEADER_FIELDS: &[Field] = &[
    Field {
        name: "stockout_id",
        label: "出库单主键id",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "order_no",
        label: "出库单号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "src_order_no",
        label: "源单号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "warehouse_no",
        label: "仓库编号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "consign_time",
        label: "发货时间",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "order_type",
        label: "出库单类型",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "trade_status",
        label: "订单状态",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "order_type_name",
        label: "出库单类型名称",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "trade_type",
        label: "订单类型",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "subtype",
        label: "出库子类型",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "goods_count",
        label: "数量",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "goods_total_amount",
        label: "货品总售价",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "goods_total_cost",
        label: "货品总成本",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "post_fee",
        label: "邮资成本",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "logistics_no",
        label: "物流单号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "package_fee",
        label: "包装费",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "receiver_name",
        label: "收件人",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "receiver_country",
        label: "国家",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "receiver_province",
        label: "省份",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "receiver_city",
        label: "城市",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "receiver_district",
        label: "地区",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "receiver_address",
        label: "详细地址",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "receiver_mobile",
        label: "收件人移动电话",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "receiver_telno",
        label: "收件人固定电话",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "receiver_zip",
        label: "邮编",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "receiver_dtb",
        label: "大头笔",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "weight",
        label: "实际重量",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "logistics_type",
        label: "物流公司类型",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "logistics_code",
        label: "物流公司编号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "logistics_name",
        label: "物流公司名称",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "print_remark",
        label: "打印备注",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "paid",
        label: "已付金额",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "refund_status",
        label: "退款状态",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "salesman_no",
        label: "业务员编号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "salesman_name",
        label: "业务员名称",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "fullname",
        label: "业务员名称",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "warehouse_name",
        label: "仓库",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "created",
        label: "创建时间",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "remark",
        label: "备注",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "stockout_reason",
        label: "出库原因",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "outer_no",
        label: "外部单号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "trade_no",
        label: "订单编号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "src_trade_no",
        label: "原始单号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "nick_name",
        label: "网名",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "customer_name",
        label: "客户名称",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "customer_no",
        label: "客户编号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "trade_time",
        label: "交易时间",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "pay_time",
        label: "付款时间",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "status",
        label: "出库单状态",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "shop_name",
        label: "店铺名称",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "shop_no",
        label: "店铺编号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "buyer_message",
        label: "买家留言",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "cs_remark",
        label: "客服备注",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "flag_name",
        label: "订单标记",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "post_amount",
        label: "邮费",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "block_reason",
        label: "截停原因",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "invoice_type",
        label: "发票类别",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "invoice_title",
        label: "发票抬头",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "invoice_content",
        label: "发票内容",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "invoice_id",
        label: "发票ID",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "delivery_term",
        label: "发货条件",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "fenxiao_type",
        label: "分销类别",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "fenxiao_nick",
        label: "分销商ID",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "cod_amount",
        label: "货到付款金额",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "id_card_type",
        label: "证件类别",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "receiver_area",
        label: "收件人地址",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "shop_remark",
        label: "店铺备注",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "modified",
        label: "最后修改时间",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "platform_id",
        label: "平台id",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "trade_id",
        label: "订单表主键",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "checker_name",
        label: "审单员编号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "employee_no",
        label: "审单员编号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "operator_name",
        label: "审核员",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "packager_no",
        label: "打包员编号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "packager_name",
        label: "打包员",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "picker_no",
        label: "拣货员编号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "picker_name",
        label: "拣货员",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "printer_no",
        label: "打单员编号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "printer_name",
        label: "打单员",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "examiner_no",
        label: "验货员编号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "examiner_name",
        label: "验货员",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "stockout_no",
        label: "出库单号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "src_order_type",
        label: "源单据类别",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "wms_status",
        label: "处理状态",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "error_info",
        label: "接口处理错误信息",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "warehouse_type",
        label: "仓库类别",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "warehouse_id",
        label: "出库仓库id",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "customer_id",
        label: "客户id",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "freeze_reason",
        label: "冻结原因",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "is_allocated",
        label: "是否分配",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "consign_status",
        label: "出库状态",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "ebill_status",
        label: "电子面单状态",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "operator_id",
        label: "制单人",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "goods_type_count",
        label: "货品种类数量",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "md5_str",
        label: "MD5字符串值",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "custom_type",
        label: "其他出库自定义子类别",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "receiver_ring",
        label: "京东三环内",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "to_deliver_time",
        label: "配送时间",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "pre_charge_time",
        label: "配送中心",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "logistics_id",
        label: "物流公司ID",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "unknown_goods_amount",
        label: "未知成本销售总额",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "calc_post_cost",
        label: "预估邮费成本",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "post_cost",
        label: "邮费成本",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "calc_weight",
        label: "预估重量",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "post_weight",
        label: "快递重量",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "package_id",
        label: "包装id",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "package_cost",
        label: "包装成本",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "has_invoice",
        label: "是否包含发票",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "printer_id",
        label: "打单员",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "pick_error_count",
        label: "拣货出错次数",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "picker_id",
        label: "拣货员id",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "sorter_id",
        label: "分拣员id",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "examiner_id",
        label: "验货员id",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "consigner_id",
        label: "发货人id",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "packager_id",
        label: "打包员id",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "pack_score",
        label: "打包积分",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "pick_score",
        label: "拣货积分",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "checkouter_id",
        label: "签出员工id",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "watcher_id",
        label: "监视员id",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "picklist_no",
        label: "分拣单编号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "picklist_seq",
        label: "分拣序号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "invoice_print_status",
        label: "发票打印状态",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "flag_id",
        label: "颜色",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "logistics_template_id",
        label: "物流单模板id",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "sendbill_template_id",
        label: "发货单模板id",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "pos_allocate_mode",
        label: "货位分配方式",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "note_count",
        label: "便签条数",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "reason_id",
        label: "其他出库原因",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "lock_id",
        label: "锁定策略id",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "reserve",
        label: "保留",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "batch_no",
        label: "打印批次",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "discount",
        label: "优惠金额",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "src_tids",
        label: "原始单号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "tax",
        label: "税额",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "tax_rate",
        label: "税率",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "currency",
        label: "币种",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "id_card",
        label: "证件号码",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "stock_check_time",
        label: "出库单审核时间",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "bad_reason",
        label: "异常状态",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "print_batch_no",
        label: "打印批次",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "sendbill_print_status",
        label: "发货单打印状态",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "logistics_print_status",
        label: "物流单打印状态",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "picklist_print_status",
        label: "分拣单打印状态",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "details_list",
        label: "货品列表节点",
        kind: FieldKind::Array,
    },
];

/// The fields of one `details_list` row, `position_list` included.
pub const DETAIL_FIELDS: &[Field] = &[
    Field {
        name: "rec_id",
        label: "出库明细主键",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "stockout_id",
        label: "出库单主键id",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "spec_no",
        label: "商家编码",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "goods_count",
        label: "货品数量",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "sell_price",
        label: "销售价",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "brand_no",
        label: "品牌编号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "brand_name",
        label: "品牌名称",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "goods_type",
        label: "货品类型",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "gift_type",
        label: "是否是赠品",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "goods_name",
        label: "货品名称",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "goods_no",
        label: "货品编号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "spec_name",
        label: "规格名称",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "spec_code",
        label: "规格码",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "suite_no",
        label: "来源组合装编码",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "cost_price",
        label: "成本价",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "total_amount",
        label: "总货款",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "goods_id",
        label: "货品id",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "spec_id",
        label: "商品主键",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "weight",
        label: "估重",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "remark",
        label: "备注",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "paid",
        label: "已支付金额",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "refund_status",
        label: "退款状态",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "market_price",
        label: "零售价",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "discount",
        label: "总折扣金额",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "share_amount",
        label: "分摊后合计应收",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "tax_rate",
        label: "税率",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "barcode",
        label: "条码",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "unit_name",
        label: "基本单位",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "sale_order_id",
        label: "订单详情表主键",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "share_post",
        label: "邮费分摊",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "src_oid",
        label: "原始子订单号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "src_tid",
        label: "原始订单号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "from_mask",
        label: "单据内部来源",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "src_order_type",
        label: "源单据类别",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "src_order_detail_id",
        label: "sales_trade_order表的主键",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "base_unit_id",
        label: "基本单位",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "unit_id",
        label: "辅助单位",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "unit_ratio",
        label: "单位换算",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "num",
        label: "货品数量",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "num2",
        label: "辅助数量",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "price",
        label: "最终价格",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "batch_id",
        label: "指定出库批次",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "is_examined",
        label: "是否验货",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "is_package",
        label: "是否包装",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "is_zero_cost",
        label: "是否允许0成本",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "scan_type",
        label: "扫描方式",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "good_prop1",
        label: "货品档案自定义属性1",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "good_prop2",
        label: "货品档案自定义属性2",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "good_prop3",
        label: "货品档案自定义属性3",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "good_prop4",
        label: "货品档案自定义属性4",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "good_prop5",
        label: "货品档案自定义属性5",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "good_prop6",
        label: "货品档案自定义属性6",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "prop1",
        label: "单品列表自定义属性1",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "prop2",
        label: "单品列表自定义属性2",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "prop3",
        label: "单品列表自定义属性3",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "prop4",
        label: "单品列表自定义属性4",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "prop5",
        label: "单品列表自定义属性5",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "prop6",
        label: "单品列表自定义属性6",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "batch_no",
        label: "批次号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "batch_remark",
        label: "批次备注",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "expire_date",
        label: "有效期",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "position_list",
        label: "货位节点列表",
        kind: FieldKind::Array,
    },
];

/// The fields of one `details_list.position_list` row.
pub const POSITION_FIELDS: &[Field] = &[
    Field {
        name: "position_id",
        label: "货位ID",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "position_no",
        label: "货位编号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "stockout_order_detail_id",
        label: "出库单明细id",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "rec_id",
        label: "货位主键id",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "stockin_detail_id",
        label: "入库单明细id",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "num",
        label: "货品数量",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "stock_spec_detail_id",
        label: "入库单号明细id",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "batch_id",
        label: "批次id",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "batch_no",
        label: "批次号",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "modified",
        label: "最后更新时间",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "cost_price",
        label: "成本价",
        kind: FieldKind::Scalar,
    },
    Field {
        name: "position_goods_count",
        label: "货位出库数量",
        kind: FieldKind::Scalar,
    },
];

/// Looks up a header field by its wire name.
pub fn header_field(name: &str) -> Option<&'static Field> {
    HEADER_FIELDS.iter().find(|f| f.name == name)
}

/// Looks up a `details_list` field by its wire name.
pub fn detail_field(name: &str) -> Option<&'static Field> {
    DETAIL_FIELDS.iter().find(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_holds_the_seed_tables_without_duplicates() {
        for list in [HEADER_FIELDS, DETAIL_FIELDS, POSITION_FIELDS] {
            let mut names: Vec<_> = list.iter().map(|f| f.name).collect();
            names.sort_unstable();
            let before = names.len();
            names.dedup();
            assert_eq!(before, names.len(), "a field is listed twice");
        }
        assert_eq!(
            header_field("details_list").map(|f| f.kind),
            Some(FieldKind::Array)
        );
        assert_eq!(
            detail_field("position_list").map(|f| f.kind),
            Some(FieldKind::Array)
        );
        assert_eq!(detail_field("goods_no").map(|f| f.label), Some("货品编号"));
    }
}
