//! A faithful stand-in for the 金蝶云星辰 gateway and the V1 endpoints the bridge uses, serving
//! the shared seeded [`World`]: every shop is a customer, every warehouse a store, every goods
//! item a material with its units.
//!
//! It verifies every X-Api-* signature with its own code ([`signature`], never the client's),
//! answers gateway refusals as HTTP 519 with their codes, issues and expires tokens, rotates the
//! app secret on demand, validates saves as 星辰 would and stores the bills. Faults are injected
//! through [`Knobs`]. Tests start it in-process on port 0 with [`XingchenSimulator::start`]; the
//! `simulator` binary mounts [`router`]. The 旺店通 simulator and order generation live
//! elsewhere in this crate.

mod admin;
mod bills;
mod gateway;
mod masterdata;
pub mod signature;
mod state;

use std::net::SocketAddr;

use axum::Router;
use axum::routing::any;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::world::World;

pub use bills::{LIST_PATH as BILL_LIST_PATH, SAVE_PATH};
pub use gateway::{AUTHORIZE_PATH, TOKEN_PATH};
pub use masterdata::MAX_PAGE_SIZE;
pub use state::{
    Knobs, LogEntry, SimCustomer, SimMaterial, SimStore, SimulatorConfig, Stats, XingchenState,
};

/// The simulator's default credentials, documented so a demo can be configured by hand.
pub mod defaults {
    /// `XINGCHEN_CLIENT_ID`.
    pub const CLIENT_ID: &str = "205022";
    /// `XINGCHEN_CLIENT_SECRET`.
    pub const CLIENT_SECRET: &str = "5f3b0c9e8a7d6b5c4e3f2a1b0c9d8e7f";
    /// `XINGCHEN_OUTER_INSTANCE_ID`.
    pub const OUTER_INSTANCE_ID: &str = "509132114453729280";
    /// The app key push_app_authorize hands out.
    pub const APP_KEY: &str = "SimAppK1";
    /// The first app secret push_app_authorize hands out (it rotates on demand).
    pub const APP_SECRET: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
    /// The active account set (`XINGCHEN_ACCOUNT_ID`, optional).
    pub const ACCOUNT_ID: &str = "1675743896569628608";
    /// The active account set's group name.
    pub const GROUP_NAME: &str = "ns-sim01";
    /// The router address business calls must send as `X-GW-Router-Addr`.
    pub const DOMAIN: &str = "https://sim-tf.jdy.com";
}

/// The simulator's routes: the gateway, the V1 endpoints and `/admin/xingchen/…`.
pub fn router(state: XingchenState) -> Router {
    Router::new()
        .route(AUTHORIZE_PATH, any(gateway::authorize))
        .route(TOKEN_PATH, any(gateway::token))
        .route("/jdy/{*rest}", any(gateway::business))
        .nest("/admin/xingchen", admin::routes())
        .fallback(|| async { gateway::refusal(5001) })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            gateway::log_requests,
        ))
        .with_state(state)
}

/// A running simulator; stops when dropped.
pub struct XingchenSimulator {
    addr: SocketAddr,
    state: XingchenState,
    server: JoinHandle<()>,
}

impl XingchenSimulator {
    /// Starts a simulator for `world` on a free local port.
    pub async fn start(world: &World, config: SimulatorConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Self::serve(listener, XingchenState::new(world, config))
    }

    /// Serves `state` on an already bound listener.
    pub fn serve(listener: TcpListener, state: XingchenState) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let app = router(state.clone());
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(error = %error, "星辰 simulator stopped");
            }
        });
        Ok(XingchenSimulator {
            addr,
            state,
            server,
        })
    }

    /// The base URL, such as `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its state: bills, master data, log, knobs.
    pub fn state(&self) -> &XingchenState {
        &self.state
    }
}

impl Drop for XingchenSimulator {
    fn drop(&mut self) {
        self.server.abort();
    }
}
