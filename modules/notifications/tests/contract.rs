//! The notifications contract suite: events handled as the bus would hand them over, and the
//! contract's answers, in process, over the HTTP pair and over the NATS pair (against a real
//! nats-server) on SQLite, and in process on PostgreSQL.

use cleave_test_support::callers::{TestResolver, admin, rpc_client, serve, user};
use migrations::MigratorTrait as _;
use notifications::{NotificationsService, Reactions};
use notifications_contract::{NotificationId, NotificationKind, NotificationsApi, http_wire, nats_wire};
use orders_contract::OrderStatus;
use orders_contract::events::{OrderCancelledV1, OrderConfirmedV1, OrderStatusChangedV1, OrderedLine};
use shared_kernel::db::{DatabaseTarget, connect_module};
use shared_kernel::events::{EventEnvelope, EventHandler as _, IntegrationEvent};
use shared_kernel::outbox::Outbox;
use shared_kernel::{ApiError, Caller, Currency, Money, OrderId, PageRequest, ProductId, Role, SystemClock, UserId};
use std::sync::Arc;
use users_contract::events::UserRegisteredV1;

struct Harness {
    api: Arc<dyn NotificationsApi>,
    reactions: Reactions,
    _temp: Option<tempfile::TempDir>,
    _served: Option<shared_kernel::nats_wire::NatsService>,
}

async fn parts_on(target: DatabaseTarget) -> (NotificationsService, Reactions) {
    let db = connect_module("notifications", &target, 10).await.expect("connect");
    migrations::notifications::Migrator::up(&db, None).await.expect("migrate");
    let clock = Arc::new(SystemClock);
    let reactions = Reactions::new(db.clone(), Outbox::new("notifications"), clock.clone());
    (NotificationsService::new(db, clock), reactions)
}

impl cleave_test_support::contract::Transports for Harness {
    type Parts = (NotificationsService, Reactions);

    async fn parts_on(target: DatabaseTarget) -> Self::Parts {
        parts_on(target).await
    }

    async fn in_process((service, reactions): Self::Parts, temp: Option<tempfile::TempDir>) -> Self {
        Self { api: Arc::new(service), reactions, _temp: temp, _served: None }
    }

    async fn over_http((service, reactions): Self::Parts, temp: Option<tempfile::TempDir>) -> Self {
        let base_url = serve(http_wire::router(Arc::new(service), Arc::new(TestResolver))).await;
        Self { api: Arc::new(http_wire::Client::new(rpc_client(base_url))), reactions, _temp: temp, _served: None }
    }

    async fn over_nats((service, reactions): Self::Parts, temp: Option<tempfile::TempDir>) -> Option<Self> {
        use cleave_test_support::nats;
        let client = nats::client().await?;
        let prefix = nats::unique_prefix();
        let served = nats_wire::serve(Arc::new(service), Arc::new(TestResolver), nats::serve_options(&client, &prefix)).await.unwrap();
        let api = Arc::new(nats_wire::Client::new(nats::rpc_client(&client, nats_wire::MODULE, &prefix)));
        Some(Self { api, reactions, _temp: temp, _served: Some(served) })
    }
}

impl Harness {
    /// Hands `event` to the reactions as the bus would.
    async fn deliver(&self, event: &EventEnvelope) {
        self.reactions.handle(event).await.expect("the reaction succeeds");
    }
}

fn envelope<E: IntegrationEvent>(event: &E) -> EventEnvelope {
    EventEnvelope::wrap(event, chrono::Utc::now(), None).unwrap()
}

fn registered(user: UserId) -> EventEnvelope {
    envelope(&UserRegisteredV1 { user_id: user, email: "ada@example.com".into(), name: "Ada".into(), registered_at: chrono::Utc::now() })
}

fn confirmed(user: UserId, order: OrderId) -> EventEnvelope {
    envelope(&OrderConfirmedV1 {
        order_id: order,
        customer_id: user,
        lines: vec![OrderedLine { product_id: ProductId::new(), quantity: 3 }],
        total: Money::new(4497, Currency::EUR),
        confirmed_at: chrono::Utc::now(),
    })
}

fn status_changed(user: UserId, order: OrderId, status: OrderStatus) -> EventEnvelope {
    envelope(&OrderStatusChangedV1 {
        order_id: order,
        customer_id: user,
        status,
        failure_reason: Some("the card was declined".into()),
        changed_at: chrono::Utc::now(),
    })
}

fn status<T: std::fmt::Debug>(result: Result<T, ApiError>) -> u16 {
    result.expect_err("expected an error").status()
}

fn page(limit: u32) -> PageRequest {
    PageRequest::new(Some(limit), None).unwrap()
}

async fn each_event_makes_one_notification_for_its_user(h: Harness) {
    let (ada, order, other_order) = (UserId::new(), OrderId::new(), OrderId::new());
    h.deliver(&registered(ada)).await;
    let confirmation = confirmed(ada, order);
    h.deliver(&confirmation).await;
    h.deliver(&confirmation).await; // redelivered: nothing more
    h.deliver(&status_changed(ada, order, OrderStatus::Confirmed)).await; // not a notification
    h.deliver(&status_changed(ada, other_order, OrderStatus::Rejected)).await;
    h.deliver(&envelope(&OrderCancelledV1 { order_id: order, customer_id: ada, lines: vec![], cancelled_at: chrono::Utc::now() })).await;

    let caller = user(Role::Customer, ada);
    let all = h.api.list_notifications(&caller, page(100)).await.unwrap();
    let kinds: Vec<NotificationKind> = all.items.iter().map(|n| n.kind).collect();
    assert_eq!(
        kinds,
        [NotificationKind::OrderCancelled, NotificationKind::OrderRejected, NotificationKind::OrderConfirmed, NotificationKind::Welcome],
        "newest first"
    );
    assert!(all.next_cursor.is_none());
    let confirmed = &all.items[2];
    assert_eq!(confirmed.order_id, Some(order));
    assert!(confirmed.body.contains("3 item(s)") && confirmed.body.contains("44.97 EUR"), "{}", confirmed.body);
    assert_eq!(all.items[1].order_id, Some(other_order));
    assert!(all.items[1].body.contains("the card was declined"));
    assert!(all.items[3].body.contains("Ada"));

    // Pages walk the same list.
    let first = h.api.list_notifications(&caller, page(3)).await.unwrap();
    assert_eq!(first.items, all.items[..3]);
    let next = PageRequest::new(Some(3), first.next_cursor).unwrap();
    assert_eq!(h.api.list_notifications(&caller, next).await.unwrap().items, all.items[3..]);

    // Only the user's own: another user, even an admin, sees none of them.
    assert!(h.api.list_notifications(&user(Role::Customer, UserId::new()), page(10)).await.unwrap().items.is_empty());
    assert!(h.api.list_notifications(&admin(), page(10)).await.unwrap().items.is_empty());
    assert_eq!(status(h.api.list_notifications(&Caller::Anonymous, page(10)).await), 401);
}

async fn marking_read_is_the_recipients_and_the_first_time_stands(h: Harness) {
    let ada = UserId::new();
    h.deliver(&registered(ada)).await;
    let caller = user(Role::Customer, ada);
    let welcome = h.api.list_notifications(&caller, page(10)).await.unwrap().items.remove(0);
    assert!(welcome.read_at.is_none());
    let read = h.api.mark_read(&caller, welcome.id).await.unwrap();
    let at = read.read_at.expect("read now");
    assert_eq!(read.id, welcome.id);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(h.api.mark_read(&caller, welcome.id).await.unwrap().read_at, Some(at), "again: unchanged");
    assert_eq!(h.api.list_notifications(&caller, page(10)).await.unwrap().items[0].read_at, Some(at));

    assert_eq!(status(h.api.mark_read(&user(Role::Customer, UserId::new()), welcome.id).await), 404, "not yours: not found");
    assert_eq!(status(h.api.mark_read(&admin(), welcome.id).await), 404);
    assert_eq!(status(h.api.mark_read(&caller, NotificationId::new()).await), 404);
    assert_eq!(status(h.api.mark_read(&Caller::Anonymous, welcome.id).await), 401);
}

cleave_test_support::contract_suite!(Harness:
each_event_makes_one_notification_for_its_user, marking_read_is_the_recipients_and_the_first_time_stands);
