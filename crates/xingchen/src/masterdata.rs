//! Master-data look-ups: customers, materials and stores, listed page by page or fetched by
//! number through the V1 `/jdy/basedata/*` endpoints.
//!
//! An unknown number is `Ok(None)`, not an error, so the transformer can dead-letter the order
//! with a clear reason. Caching the answers is left to the caller.

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::client::Client;
use crate::error::Result;
use crate::model::{Customer, Material, Store};
use crate::wire;

/// The most pages one list read follows, against a server that never stops paging.
const MAX_PAGES: u64 = 10_000;

/// A kind of master data and its V1 endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterData {
    /// `/jdy/basedata/customer_*`.
    Customer,
    /// `/jdy/basedata/material_*`.
    Material,
    /// `/jdy/basedata/store_*`.
    Store,
}

impl MasterData {
    /// The list endpoint.
    pub fn list_path(self) -> &'static str {
        match self {
            MasterData::Customer => "/jdy/basedata/customer_list",
            MasterData::Material => "/jdy/basedata/material_list",
            MasterData::Store => "/jdy/basedata/store_list",
        }
    }

    /// The detail endpoint.
    pub fn detail_path(self) -> &'static str {
        match self {
            MasterData::Customer => "/jdy/basedata/customer_detail",
            MasterData::Material => "/jdy/basedata/material_detail",
            MasterData::Store => "/jdy/basedata/store_detail",
        }
    }
}

impl Client {
    /// Every customer, all pages read.
    pub async fn customers(&self) -> Result<Vec<Customer>> {
        self.list_all(MasterData::Customer).await
    }

    /// Every material, all pages read.
    pub async fn materials(&self) -> Result<Vec<Material>> {
        self.list_all(MasterData::Material).await
    }

    /// Every store, all pages read.
    pub async fn stores(&self) -> Result<Vec<Store>> {
        self.list_all(MasterData::Store).await
    }

    /// The customer with this number, or `None` when 星辰 has none.
    pub async fn customer(&self, number: &str) -> Result<Option<Customer>> {
        self.detail(MasterData::Customer, number).await
    }

    /// The material with this number, with its base unit, or `None` when 星辰 has none.
    pub async fn material(&self, number: &str) -> Result<Option<Material>> {
        self.detail(MasterData::Material, number).await
    }

    /// The store with this number, or `None` when 星辰 has none.
    pub async fn store(&self, number: &str) -> Result<Option<Store>> {
        self.detail(MasterData::Store, number).await
    }

    /// Every row of one kind of master data, as raw JSON or any record type.
    pub async fn list_all<T: DeserializeOwned>(&self, kind: MasterData) -> Result<Vec<T>> {
        let path = kind.list_path();
        let page_size = self.config().page_size;
        let mut rows = Vec::new();
        let mut page_no = 1;
        loop {
            let body = json!({ "page": page_no, "pagesize": page_size });
            let page = wire::page::<T>(path, self.call_v1(path, &body).await?)?;
            let empty = page.rows.is_empty();
            rows.extend(page.rows);
            if empty || page_no >= page.total_pages || page_no >= MAX_PAGES {
                return Ok(rows);
            }
            page_no += 1;
        }
    }

    /// One record by number, as raw JSON or any record type; `None` when unknown.
    pub async fn detail<T: DeserializeOwned>(
        &self,
        kind: MasterData,
        number: &str,
    ) -> Result<Option<T>> {
        let path = kind.detail_path();
        let data = match self.call_v1(path, &json!({ "number": number })).await {
            Err(error) if wire::is_not_found(&error) => return Ok(None),
            other => other?,
        };
        if is_empty(&data) {
            return Ok(None);
        }
        serde_json::from_value(data)
            .map(Some)
            .map_err(|e| crate::Error::Decode {
                endpoint: path.to_owned(),
                message: e.to_string(),
            })
    }
}

fn is_empty(data: &Value) -> bool {
    match data {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(rows) => rows.is_empty(),
        _ => false,
    }
}
