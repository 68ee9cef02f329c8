//! The shared request budget against a real `nats-server -js`, as replicas would use it: each
//! budget on its own connection, callers asking as fast as they can, grants counted in windows
//! computed from the timestamps the test records. The last test drives three 星辰 clients
//! against the simulator, whose sliding-minute limit answers 429 above R.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use pipeline::budget::{BudgetConfig, SharedBudget};
use pipeline::{NatsConfig, TopologyConfig};
use simulator::world::World;
use simulator::xingchen::{SimulatorConfig, XingchenSimulator, defaults};
use test_support::NatsServer;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use xingchen::{Client, RateLimitFn, Secret, XingchenConfig};

/// How long any wait in these tests may take before it fails.
const PATIENCE: Duration = Duration::from_secs(20);
/// A high rate, so that a dozen seconds hold a few hundred grants.
const FAST_PER_MINUTE: u32 = 1200;
/// Callers per budget, each asking again as soon as it is granted.
const CALLERS: usize = 8;
/// Length of the windows the grants are counted in.
const WINDOW: Duration = Duration::from_secs(5);

/// A budget on a connection of its own, as a separate process would hold it.
async fn budget(
    server: &NatsServer,
    account_set: &str,
    requests_per_minute: u32,
    config: &BudgetConfig,
) -> SharedBudget {
    let client = pipeline::connect(&NatsConfig::for_url(server.url()))
        .await
        .expect("connect");
    let topology = pipeline::ensure_topology(&jetstream::new(client), &TopologyConfig::default())
        .await
        .expect("topology");
    SharedBudget::start(topology.budget, account_set, requests_per_minute, config).expect("budget")
}

/// Runs [`CALLERS`] greedy callers on every budget for `run` and returns each budget's grant
/// times; a caller still waiting at the end is dropped mid-wait.
async fn hammer(budgets: &[SharedBudget], run: Duration) -> (Vec<Vec<Instant>>, Duration) {
    let started = Instant::now();
    let stop = started + run;
    let mut tasks = Vec::new();
    let logs: Vec<Arc<Mutex<Vec<Instant>>>> = budgets.iter().map(|_| Arc::default()).collect();
    for (budget, log) in budgets.iter().zip(&logs) {
        for _ in 0..CALLERS {
            let (budget, log) = (budget.clone(), Arc::clone(log));
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = budget.acquire() => log.lock().expect("log").push(Instant::now()),
                        () = sleep_until(stop) => return,
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("caller");
    }
    let grants = logs
        .iter()
        .map(|log| log.lock().expect("log").clone())
        .collect();
    (grants, started.elapsed())
}

/// Checks that `grants` (sorted) keep to `requests_per_minute` with a bucket of `burst`: over
/// their whole span, and in every [`WINDOW`] that starts at a grant. The window allows one grant
/// more, for the gap between a grant and the moment the caller's task records it.
fn assert_within_rate(grants: &[Instant], requests_per_minute: u32, burst: u32) {
    let per_second = f64::from(requests_per_minute) / 60.0;
    let (Some(first), Some(last)) = (grants.first(), grants.last()) else {
        panic!("no grant at all");
    };
    let span = (*last - *first).as_secs_f64();
    let allowed = per_second * span + f64::from(burst);
    assert!(
        grants.len() as f64 <= allowed,
        "{} grants in {span:.2} s, at most {allowed:.1} allowed",
        grants.len()
    );

    let per_window = per_second * WINDOW.as_secs_f64() + f64::from(burst) + 1.0;
    for (i, start) in grants.iter().enumerate() {
        let in_window = grants[i..].partition_point(|g| *g < *start + WINDOW);
        assert!(
            in_window as f64 <= per_window,
            "{in_window} grants within {WINDOW:?} of grant {i}, at most {per_window:.1} allowed"
        );
    }
}

/// Checks that `granted` is at least 90 % of what the rate allows over `elapsed`.
fn assert_most_of_the_rate(granted: usize, requests_per_minute: u32, elapsed: Duration) {
    let budget = f64::from(requests_per_minute) * elapsed.as_secs_f64() / 60.0;
    assert!(
        granted as f64 >= 0.9 * budget,
        "{granted} grants in {elapsed:?}, less than 90 % of {budget:.0}"
    );
}

fn merged(grants: &[Vec<Instant>]) -> Vec<Instant> {
    let mut all: Vec<Instant> = grants.iter().flatten().copied().collect();
    all.sort();
    all
}

#[tokio::test]
async fn three_replicas_together_stay_within_the_rate_and_use_most_of_it() {
    let server = NatsServer::start();
    let config = BudgetConfig::default();
    let mut budgets = Vec::new();
    for _ in 0..3 {
        budgets.push(budget(&server, "account-a", FAST_PER_MINUTE, &config).await);
    }

    let (grants, elapsed) = hammer(&budgets, Duration::from_secs(12)).await;

    let all = merged(&grants);
    let shares: Vec<f64> = grants
        .iter()
        .map(|g| g.len() as f64 / all.len() as f64)
        .collect();
    let conflicts: u64 = budgets.iter().map(|b| b.stats().conflicts).sum();
    eprintln!(
        "three replicas: {} grants in {elapsed:?} (rate allows {:.0}), shares {shares:.3?}, \
         {conflicts} lost races",
        all.len(),
        f64::from(FAST_PER_MINUTE) * elapsed.as_secs_f64() / 60.0,
    );
    assert_within_rate(&all, FAST_PER_MINUTE, config.burst);
    assert_most_of_the_rate(all.len(), FAST_PER_MINUTE, elapsed);
    for share in shares {
        assert!(share >= 0.2, "a replica was starved: shares {share:.3}");
    }
}

#[tokio::test]
async fn one_replica_alone_stays_within_the_rate_and_uses_most_of_it() {
    let server = NatsServer::start();
    let config = BudgetConfig::default();
    let budgets = [budget(&server, "account-a", FAST_PER_MINUTE, &config).await];

    let (grants, elapsed) = hammer(&budgets, Duration::from_secs(12)).await;

    let all = merged(&grants);
    eprintln!("one replica: {} grants in {elapsed:?}", all.len());
    assert_within_rate(&all, FAST_PER_MINUTE, config.burst);
    assert_most_of_the_rate(all.len(), FAST_PER_MINUTE, elapsed);
    assert_eq!(budgets[0].stats().conflicts, 0, "nobody to race with");
}

#[tokio::test]
async fn account_sets_have_budgets_of_their_own() {
    let server = NatsServer::start();
    let config = BudgetConfig::default();
    let budgets = [
        budget(&server, "account-a", FAST_PER_MINUTE, &config).await,
        budget(&server, "account-b", FAST_PER_MINUTE, &config).await,
    ];

    let (grants, elapsed) = hammer(&budgets, Duration::from_secs(5)).await;

    for account in &grants {
        assert_within_rate(account, FAST_PER_MINUTE, config.burst);
        assert_most_of_the_rate(account.len(), FAST_PER_MINUTE, elapsed);
    }
}

/// Waits until `budget` has `waiting` callers queued.
async fn until_waiting(budget: &SharedBudget, waiting: usize) {
    let deadline = Instant::now() + PATIENCE;
    while budget.stats().waiting != waiting {
        assert!(
            Instant::now() < deadline,
            "waited for {waiting} queued callers, have {:?}",
            budget.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn callers_are_served_in_arrival_order_and_one_that_gives_up_loses_its_place() {
    let server = NatsServer::start();
    // 120 a minute with no burst: one token about every half second.
    let config = BudgetConfig {
        burst: 1,
        ..BudgetConfig::default()
    };
    let budget = budget(&server, "account-a", 120, &config).await;
    budget.acquire().await;

    let (served, mut order) = mpsc::channel(3);
    let mut callers = Vec::new();
    for name in ["first", "quitter", "third"] {
        let (caller, served) = (budget.clone(), served.clone());
        callers.push(tokio::spawn(async move {
            caller.acquire().await;
            served.send(name).await.expect("test is listening");
        }));
        until_waiting(&budget, callers.len()).await;
    }
    callers[1].abort();

    for expected in ["first", "third"] {
        let name = timeout(PATIENCE, order.recv())
            .await
            .expect("a caller is served");
        assert_eq!(name, Some(expected));
    }
    assert_eq!(budget.stats().granted, 3, "the quitter got nothing");
}

#[tokio::test]
async fn acquire_waits_while_nats_is_down_and_resumes_when_it_returns() {
    let mut server = NatsServer::start();
    let config = BudgetConfig {
        burst: 1,
        ..BudgetConfig::default()
    };
    let budget = budget(&server, "account-a", 600, &config).await;
    budget.acquire().await;

    server.stop();
    let waiting = tokio::spawn({
        let budget = budget.clone();
        async move { budget.acquire().await }
    });
    let deadline = Instant::now() + PATIENCE;
    while budget.stats().errors == 0 {
        assert!(
            Instant::now() < deadline,
            "the budget never noticed NATS was gone"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!waiting.is_finished(), "a request went through unbudgeted");
    assert_eq!(budget.stats().granted, 1);

    server.restart();
    timeout(PATIENCE, waiting)
        .await
        .expect("granted once NATS is back")
        .expect("caller");
    assert_eq!(budget.stats().granted, 2);
}

/// A 星辰 client for `sim` whose every request waits on `budget`, as a worker builds it.
fn xingchen_client(sim: &XingchenSimulator, budget: SharedBudget, per_minute: u32) -> Client {
    let mut config = XingchenConfig::new(
        sim.url(),
        defaults::CLIENT_ID,
        Secret::new(defaults::CLIENT_SECRET),
        defaults::OUTER_INSTANCE_ID,
    );
    config.requests_per_minute = per_minute;
    config.timeout = Duration::from_secs(5);
    let limit = RateLimitFn::new(move || budget.acquire_owned());
    Client::with_rate_limit(config, Arc::new(limit)).expect("client")
}

/// Looks `number` up with four callers per client, as fast as each is let, until `stop`.
async fn look_up_until(clients: &[Client], number: &str, stop: Instant) {
    let mut tasks = Vec::new();
    for client in clients {
        // Fewer callers than the client's in-flight bound, so none waits there after its grant.
        for _ in 0..4 {
            let (client, number) = (client.clone(), number.to_owned());
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        // The simulator's log judges the run: a failed lookup counts there.
                        _ = client.customer(&number) => {}
                        () = sleep_until(stop) => return,
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("caller");
    }
}

#[tokio::test]
async fn three_clients_against_the_simulator_see_no_429_after_warm_up() {
    const PER_MINUTE: u32 = 1200;
    // The simulator counts a sliding minute, so only a run longer than a minute can catch a
    // budget that is a little too generous.
    const RUN: Duration = Duration::from_secs(66);
    let server = NatsServer::start();
    let world = World::generate(7);
    let sim = XingchenSimulator::start(&world, SimulatorConfig::default())
        .await
        .expect("simulator");
    sim.state()
        .update_knobs(|knobs| knobs.requests_per_minute = Some(PER_MINUTE));
    let number = world.shops[0].shop_no.clone();
    let shape = BudgetConfig::default();
    let mut clients = Vec::new();
    for _ in 0..3 {
        let budget = budget(&server, defaults::ACCOUNT_ID, PER_MINUTE, &shape).await;
        let client = xingchen_client(&sim, budget, PER_MINUTE);
        // Fetching tokens spends budget the simulator does not count; done here, it cannot
        // hide the burst the run starts with.
        client.customer(&number).await.expect("warm-up lookup");
        clients.push(client);
    }
    // Idle long enough for the bucket to fill: the run opens with a full burst, the case a
    // budget that forgot its burst would pay for a minute later.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let run_from_ms = chrono::Utc::now().timestamp_millis();
    let started = Instant::now();
    look_up_until(&clients, &number, started + RUN).await;
    let elapsed = started.elapsed();

    let run: Vec<_> = sim
        .state()
        .log()
        .into_iter()
        .filter(|entry| entry.endpoint.starts_with("/jdy/") && entry.started_ms >= run_from_ms)
        .collect();
    let late_429 = run
        .iter()
        .filter(|entry| entry.status == 429 && entry.started_ms >= run_from_ms + 2000)
        .count();
    let all_429 = run.iter().filter(|entry| entry.status == 429).count();
    let succeeded = run.iter().filter(|entry| entry.status == 200).count();
    eprintln!(
        "simulator: {succeeded} calls answered in {elapsed:?} (budget {:.0}), {all_429} answered \
         429",
        f64::from(PER_MINUTE) * elapsed.as_secs_f64() / 60.0
    );
    assert_eq!(late_429, 0, "429 answers after the first 2 s");
    assert_most_of_the_rate(succeeded, PER_MINUTE, elapsed);
}
